"""Typed columns on the PostgreSQL this suite runs on, imported by a real worker: `make test`
runs this file on the embedded PostgreSQL 16 and again on the system's (15 on Debian 12), where
pg_input_is_valid does not exist (issue 16: every typed import failed there with SQL in its
error)."""

import pytest
from django.db import connection

from schedules import services
from schedules.models import Record
from tests.factories import make_import
from tests.reliability import FAST, wait_for_the_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

COLUMNS = [
    {"name": "sku", "type": "text", "required": True},
    {"name": "qty", "type": "int"},
    {"name": "price", "type": "decimal"},
    {"name": "since", "type": "date"},
    {"name": "seen", "type": "datetime"},
]
CSV = (
    "sku,qty,price,since,seen\n"
    "A-1,42,10.50,2024-02-29,2024-03-01T12:30:00+02:00\n"
    "B-2,many,ten,2023-02-29,yesterday\n"
    "C-3,-7,0.1,,2024-03-01 12:30:00\n"
)


def test_a_worker_imports_typed_columns_on_this_postgresql(alice, csv_server, processes):
    # Given a worker and an import whose columns are typed
    version = connection.pg_version
    imp = make_import(alice, csv_server.serve("/typed.csv", CSV), columns=COLUMNS)
    processes.start("worker", **FAST)

    # When it runs
    run = services.enqueue_run(imp, trigger="api", user=alice)
    run = wait_for_the_end(run, processes)

    # Then the good rows land typed and the bad one is reported, whatever the server's version
    print(f"\n[figures] typed columns on PostgreSQL {version // 10000}.{version % 10000}: "
          f"status={run.status} rows_failed={run.rows_failed}")  # fmt: skip
    assert run.status == "partial", run.error_message
    stored = dict(Record.objects.filter(dataset=imp.dataset).values_list("key", "data"))
    assert stored["A-1"] == {
        "sku": "A-1", "qty": 42, "price": 10.5, "since": "2024-02-29",
        "seen": "2024-03-01T10:30:00+00:00",
    }  # fmt: skip
    assert stored["C-3"]["qty"] == -7 and stored["C-3"]["since"] is None
    reasons = {e["column"]: e["reason"] for e in run.error_details["rows"]}
    assert set(reasons) == {"qty", "price", "since", "seen"}
    assert reasons["qty"].startswith("not a valid int")
    assert reasons["since"].startswith("not a valid date")
