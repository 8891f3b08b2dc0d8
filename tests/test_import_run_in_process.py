"""The first import path, run in-process: fetch, upsert by key, log the run."""

import pytest

from schedules.models import Record
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import run_now

pytestmark = pytest.mark.django_db


def test_it_loads_rows_upserted_by_key_and_logs_the_counts(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))

    run = run_now(imp)

    assert run.status == "succeeded", run.error_message
    assert (run.rows_read, run.rows_inserted, run.rows_updated, run.rows_failed) == (3, 3, 0, 0)
    assert run.attempts == 1 and run.worker and run.duration_ms is not None
    assert run.bytes_read == len(PRODUCTS_CSV)
    crate = Record.objects.get(dataset=imp.dataset, key="C-3")
    assert crate.data == {"sku": "C-3", "name": "Crate, large", "price": "7.00"}
    imp.refresh_from_db()
    assert (imp.total_runs, imp.successful_runs, imp.last_run_status) == (1, 1, "succeeded")


def test_reimporting_an_unchanged_file_changes_nothing(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    run_now(imp)
    before = {r.key: (r.updated_at, r.last_changed_run_id) for r in Record.objects.all()}

    second = run_now(imp)

    assert (second.rows_inserted, second.rows_updated, second.rows_unchanged) == (0, 0, 3)
    after = {r.key: (r.updated_at, r.last_changed_run_id) for r in Record.objects.all()}
    assert after == before


def test_a_changed_row_is_updated_and_a_new_one_inserted(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    run_now(imp)
    csv_server.serve("/p.csv", PRODUCTS_CSV.replace("10.50", "11.00") + "D-4,Drill,99\n")

    run = run_now(imp)

    assert (run.rows_inserted, run.rows_updated, run.rows_unchanged) == (1, 1, 2)
    assert Record.objects.get(key="A-1").data["price"] == "11.00"


def test_an_http_404_fails_the_run_at_once_with_the_cause(alice, csv_server):
    imp = make_import(alice, csv_server.base_url + "/missing.csv")

    run = run_now(imp)

    assert run.status == "failed"
    assert "HTTP 404" in run.error_message
    assert csv_server.hits["/missing.csv"] == 1
    imp.refresh_from_db()
    assert imp.consecutive_failures == 1


def test_a_missing_key_column_fails_the_run_naming_the_column(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), key_column="id")

    run = run_now(imp)

    assert run.status == "failed"
    assert "'id'" in run.error_message and "sku, name, price" in run.error_message
