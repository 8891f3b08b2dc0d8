"""A feed that stopped delivering fails nothing: a glob that matches no file skips its runs.
So the import keeps when its last succeeded run ended (`last_success_at`: API, admin,
/metrics' importbeat_import_last_success_timestamp_seconds, for an alert on a feed gone
quiet), and each skipped run says how long ago that was. Before, every skipped run said only
"no file matches … yet", the same on the first day and on the thirtieth."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from schedules.models import ImportRun, ScheduledImport
from tests.api_support import API, client_for
from tests.drop_support import put
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import run_now

# The files move once each run's end is committed: these tests commit, as a worker does.
pytestmark = pytest.mark.django_db(transaction=True)


def test_runs_of_a_feed_gone_quiet_say_when_the_import_last_succeeded(alice, drop):
    # Given a glob import that has never succeeded: its skipped run says so
    imp = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)
    first = run_now(imp)
    assert first.status == "skipped"
    assert first.error_message.endswith("yet; no run of this import has succeeded yet")

    # When a delivery is imported, and the feed then delivers nothing for three days
    put(drop / "products_1.csv", PRODUCTS_CSV)
    taken = run_now(imp)
    assert taken.status == "succeeded"
    imp.refresh_from_db()
    assert imp.last_success_at == taken.finished_at
    three_days_ago = taken.finished_at - timedelta(days=3, hours=2)
    ImportRun.objects.filter(pk=taken.pk).update(finished_at=three_days_ago)
    ScheduledImport.objects.filter(pk=imp.pk).update(last_success_at=three_days_ago)
    quiet = run_now(imp)

    # Then the skipped run says how long nothing came, and the API shows since when
    assert quiet.status == "skipped"
    assert quiet.error_message == (
        f"no file matches {drop}/products_*.csv yet; the import last succeeded 3 days ago "
        f"({three_days_ago:%Y-%m-%d %H:%M} UTC)"
    )
    shown = client_for(alice).get(f"{API}/imports/{imp.pk}/").json()
    assert shown["last_success_at"] == three_days_ago.isoformat().replace("+00:00", "Z")


def test_a_failed_or_partial_run_leaves_the_last_success_as_it_was(alice, drop):
    # Given an import that succeeded once
    put(drop / "products.csv", PRODUCTS_CSV, mtime=time.time() - 120)
    imp = make_import(alice, f"file://{drop}/products.csv")
    succeeded = run_now(imp)
    assert succeeded.status == "succeeded"

    # When its file gets a bad row (partial), then is no CSV (failed)
    put(drop / "products.csv", PRODUCTS_CSV + "B-9,Bolt\n", mtime=time.time() - 60)
    assert run_now(imp).status == "partial"
    put(drop / "products.csv", bytes(range(256)) * 4)
    assert run_now(imp).status == "failed"

    # Then its last success is still the run that succeeded (a partial run is no success)
    imp.refresh_from_db()
    assert imp.last_success_at == succeeded.finished_at
    assert imp.last_run_status == "failed"
