"""A database that drops the connection mid-import is a transient failure (the run retries)."""

import psycopg
import pytest
from django.db import OperationalError

from schedules.models import ImportRun
from tasks.engine import pipeline
from tasks.errors import TransientImportError
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "error",
    [OperationalError("server closed the connection"), psycopg.OperationalError("terminated")],
)
def test_an_operational_error_from_django_or_psycopg_is_transient(
    alice, csv_server, monkeypatch, error
):
    # Given the database fails while the staged file is being merged
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    run = ImportRun.objects.create(scheduled_import=imp, trigger="manual")

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(pipeline, "_validate_and_merge", fail)

    # When the file is imported, then the failure is one worth another attempt
    with pytest.raises(TransientImportError, match="lost its connection to importbeat's database"):
        pipeline.import_run(run)
