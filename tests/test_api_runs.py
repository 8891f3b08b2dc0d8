"""Run history and run detail: newest first, filters, errors and live progress."""

from datetime import timedelta

import pytest
from django.utils import timezone

from project.celery import app
from tests.api_support import API, SOURCE, client_for, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(alice):
    """Four runs of one import over three days, and one run of another import."""
    now = timezone.now()
    imp = make_import(alice, SOURCE)
    runs = {
        "old_failed": make_run(imp, "failed", queued_at=now - timedelta(days=2)),
        "old_manual": make_run(
            imp, "succeeded", trigger="manual", queued_at=now - timedelta(days=1)
        ),
        "partial": make_run(imp, "partial", queued_at=now - timedelta(hours=1)),
        "newest": make_run(imp, "succeeded", queued_at=now),
    }
    other = make_import(alice, SOURCE, name="other", dataset="other")
    runs["other"] = make_run(other, "succeeded", queued_at=now)
    return imp, runs, now


def ids(response) -> list[int]:
    assert response.status_code == 200, response.json()
    return [run["id"] for run in response.json()["results"]]


def test_the_history_of_an_import_is_newest_first(alice, history):
    imp, runs, _ = history

    response = client_for(alice).get(f"{API}/imports/{imp.pk}/runs/")

    assert response.json()["count"] == 4
    assert ids(response) == [runs[n].pk for n in ("newest", "partial", "old_manual", "old_failed")]


def test_the_history_filters_by_status_trigger_since_and_until(alice, history):
    imp, runs, now = history
    client = client_for(alice)
    url = f"{API}/imports/{imp.pk}/runs/"

    assert ids(client.get(url, {"status": "failed"})) == [runs["old_failed"].pk]
    assert set(ids(client.get(url + "?status=failed&status=partial"))) == {
        runs["old_failed"].pk, runs["partial"].pk,
    }  # fmt: skip
    assert ids(client.get(url, {"trigger": "manual"})) == [runs["old_manual"].pk]
    since = (now - timedelta(hours=2)).isoformat()
    assert ids(client.get(url, {"since": since})) == [runs["newest"].pk, runs["partial"].pk]
    until = (now - timedelta(hours=2)).isoformat()
    assert ids(client.get(url, {"until": until})) == [runs["old_manual"].pk, runs["old_failed"].pk]


def test_a_bad_filter_is_a_400_naming_it(alice, history):
    imp, _, _ = history

    response = client_for(alice).get(f"{API}/imports/{imp.pk}/runs/", {"since": "yesterday"})

    assert response.status_code == 400
    assert "since" in response.json()["errors"]


def test_all_my_runs_are_listed_and_filter_by_import(alice, history):
    imp, runs, _ = history
    client = client_for(alice)

    assert client.get(f"{API}/runs/").json()["count"] == 5
    assert runs["other"].pk not in ids(client.get(f"{API}/runs/", {"import_id": imp.pk}))


def test_a_run_shows_its_errors(alice, history):
    imp, _, _ = history
    run = make_run(
        imp,
        "partial",
        rows_read=3,
        rows_failed=1,
        error_message="1 rows failed",
        error_details={
            "rows": [{"line": 3, "column": "price", "value": "ten", "reason": "not a decimal"}]
        },
    )

    response = client_for(alice).get(f"{API}/runs/{run.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert body["error_message"] == "1 rows failed"
    assert body["error_details"]["rows"][0] == {
        "line": 3, "column": "price", "value": "ten", "reason": "not a decimal",
    }  # fmt: skip


def test_a_running_run_shows_live_progress_from_its_task_state(alice, history):
    # Given a running run whose row lags behind the progress its task reported
    imp, _, _ = history
    run = make_run(imp, "running", bytes_read=100, bytes_total=1000, celery_task_id="live-1")
    app.backend.store_result(
        "live-1", {"run_id": run.pk, "bytes_read": 600, "bytes_total": 1000, "rows_read": 42},
        "PROGRESS",
    )  # fmt: skip

    # When alice reads the run
    body = client_for(alice).get(f"{API}/runs/{run.pk}/").json()

    # Then she sees the task's figures
    assert (body["bytes_read"], body["bytes_total"], body["rows_read"]) == (600, 1000, 42)
    assert body["progress"] == 0.6
    app.backend.forget("live-1")


def test_a_new_attempt_shows_its_own_progress_not_the_last_ones(alice, history):
    # Given a run whose first attempt broke off at 77 % and waits for its retry
    from schedules import services

    imp, _, _ = history
    run = make_run(
        imp, "retrying", attempts=1, bytes_read=786_432, bytes_total=1_024_505, rows_read=9_000,
        celery_task_id="live-2",
    )  # fmt: skip

    # When its second attempt starts, and reports its first 64 KiB
    assert services.claim_run(run, task_id="live-2", worker="w") == services.Claim.CLAIMED
    started = client_for(alice).get(f"{API}/runs/{run.pk}/").json()
    app.backend.store_result(
        "live-2", {"run_id": run.pk, "bytes_read": 65_536, "bytes_total": 1_024_505}, "PROGRESS"
    )
    reported = client_for(alice).get(f"{API}/runs/{run.pk}/").json()

    # Then it shows no progress until it has some, then its own: the first attempt's 77 %
    # showed, and the second's figures, behind the row's, were not taken
    assert (started["bytes_read"], started["rows_read"], started["progress"]) == (0, 0, None)
    assert (reported["bytes_read"], reported["progress"]) == (65_536, 0.064)
    app.backend.forget("live-2")


def test_a_finished_run_shows_full_progress(alice, history):
    _, runs, _ = history

    body = client_for(alice).get(f"{API}/runs/{runs['newest'].pk}/").json()

    assert body["progress"] == 1.0 and body["duration_ms"] == 1000


def test_a_since_with_an_offset_postgresql_cannot_store_is_normalised_not_a_500(alice, history):
    # Regression: schemathesis found `since=0258-11-07T01:32:10+23:29` answered 500.
    imp, _, _ = history

    response = client_for(alice).get(
        f"{API}/imports/{imp.pk}/runs/", {"since": "0258-11-07T01:32:10+23:29"}
    )

    assert response.status_code == 200
    assert response.json()["count"] == 4


@pytest.mark.parametrize("path", ["/runs/", "/imports/{imp}/runs/"])
def test_a_list_of_runs_reads_only_the_columns_it_shows_in_one_query(alice, history, path):
    # Given runs with long row errors, of an import with a long description
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    imp, runs, _ = history
    errors = {"rows": [{"line": n, "reason": "x" * 200} for n in range(100)]}
    for run in runs.values():
        run.error_details = errors
        run.save(update_fields=["error_details"])
    imp.description = "y" * 5000
    imp.save(update_fields=["description"])
    client = client_for(alice)

    # When a list of runs is asked for
    with CaptureQueriesContext(connection) as queries:
        response = client.get(API + path.format(imp=imp.pk))

    # Then the rows come with their import's name and who triggered them, in one query that
    # leaves out the row errors and the rest of the import, after one that chose the page's
    # ids and their places for the links (listed_runs); the detail still shows the errors
    assert response.status_code == 200, response.json()
    shown = response.json()["results"]
    names = {run["import_id"]: run["import_name"] for run in shown}
    assert names[imp.pk] == "products" and len(shown) >= 4
    assert "error_details" not in shown[0]
    selects = [q["sql"] for q in queries.captured_queries if '"schedules_importrun"' in q["sql"]
               and "COUNT(" not in q["sql"]]  # fmt: skip
    assert len(selects) == 2, selects
    chosen, read = selects
    assert chosen.startswith(
        'SELECT "schedules_importrun"."id" AS "pk", "schedules_importrun"."queued_at" AS '
        '"queued_at" FROM'
    ), chosen
    assert "error_details" not in read and '"description"' not in read
    detail = client.get(f"{API}/runs/{runs['newest'].pk}/").json()
    assert len(detail["error_details"]["rows"]) == 100
