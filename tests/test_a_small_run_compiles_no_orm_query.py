"""A small run's own statements are written once (schedules/rows.py), not compiled by the ORM
on every run: compiling them cost a 100-row run more CPU than PostgreSQL spent executing
them (issue 15: 1.7 ms of Python to read a run with its import and dataset, for a statement
answered in 0.1 ms). Before, a first load compiled 13."""

import pytest

from schedules.models import ImportRun
from tasks import runner
from tasks.engine import progress
from tests.api_support import tables_compiled
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_first_load_on_the_workers_path_compiles_no_orm_query(alice, csv_server, monkeypatch):
    # Given a small import, run the way a worker runs it (lease, owner's cap, claim, engine,
    # outcome), too short to publish its progress
    monkeypatch.setattr(progress, "VISIBLE_AFTER_SECONDS", 60)
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    run = ImportRun.objects.create(scheduled_import=imp, trigger="manual")
    task = type("task", (), {"request": type("request", (), {"hostname": "w", "id": "t-1"})})()

    # When it runs
    with tables_compiled() as compiled:
        runner.execute(run.pk, task)

    # Then it landed, and the ORM compiled none of its statements
    run.refresh_from_db()
    assert (run.status, run.rows_inserted) == ("succeeded", 3)
    assert compiled == []
