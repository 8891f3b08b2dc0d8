"""A database that drops the connection mid-import is a transient failure (the run retries)."""

import psycopg
import pytest
from django.db import OperationalError

from schedules.models import ImportRun
from tasks.engine import pipeline
from tasks.errors import PermanentImportError, TransientImportError, beyond_database_limits
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


def test_a_statement_past_the_databases_limits_fails_the_run_for_good():
    # SQLSTATE class 54 (an index entry or a row too large) is an OperationalError to psycopg,
    # and was taken for a lost connection: retried at every attempt, failing the same way
    refused = psycopg.errors.ProgramLimitExceeded("index row size 4024 exceeds maximum 2704")
    wrapped = OperationalError("index row size 4024 exceeds maximum 2704")
    wrapped.__cause__ = refused

    found = beyond_database_limits(wrapped)

    assert isinstance(found, PermanentImportError)
    assert "beyond what importbeat's database can hold" in str(found)
    assert "index" not in str(found)
    assert beyond_database_limits(psycopg.OperationalError("server closed the connection")) is None
