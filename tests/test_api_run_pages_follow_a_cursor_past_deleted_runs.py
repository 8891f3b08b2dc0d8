"""Regression (API hunt, finding 2): walking `GET /runs/` or `GET /imports/{id}/runs/` by
following `next` skipped runs when runs already read were deleted between two pages, and
listed a run twice when runs were queued meanwhile.

What a client met before: pages were OFFSETs (`next` was `?page=2`, `?page=3`, ...). A script
exporting the run log, or a dashboard reconciling it, read page 1; then the hourly retention
job deleted succeeded runs past 30 days (failed ones stay 90, interleaved with them), or the
user deleted an import, whose runs leave `GET /runs/`: every later run moved up one place per
deletion, and the run crossing the page boundary was never listed, without a word. The README's
`until` recipe did not help. Now `next` and `previous` carry the place of the page's last (or
first) run in the list's order (`queued_at`, id): the next page is the runs older than that
run, whatever was deleted or queued since.
"""

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from tasks.maintenance import delete_old_runs
from tests.api_support import API, SOURCE, client_for, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def walk(client, url, between=lambda: None, link="next"):
    """Every run id the pages show, in order, following `link` from `url`; `between()` runs
    after the first page, as another client or the retention job would."""
    first = client.get(url)
    assert first.status_code == 200, first.json()
    seen = [run["id"] for run in first.json()["results"]]
    between()
    url = first.json()[link]
    while url:
        answer = client.get(url)
        assert answer.status_code == 200, (url, answer.json())
        seen += [run["id"] for run in answer.json()["results"]]
        url = answer.json()[link]
    return seen


def test_deleting_an_import_while_a_client_walks_all_runs_skips_none_of_the_others(alice):
    # Given alice's two imports, their runs interleaved in time
    now = timezone.now()
    kept = make_import(alice, SOURCE, name="kept", dataset="kept")
    gone = make_import(alice, SOURCE, name="gone", dataset="gone")
    kept_runs = []
    for hour in range(6):
        kept_runs.append(make_run(kept, queued_at=now - timedelta(hours=2 * hour)).pk)
        make_run(gone, queued_at=now - timedelta(hours=2 * hour + 1))
    client = client_for(alice)

    # When a script follows `next` two runs at a time, and she deletes the other import
    # after the first page
    seen = walk(
        client,
        f"{API}/runs/?page_size=2",
        lambda: client.delete(f"{API}/imports/{gone.pk}/"),
    )

    # Then every run of the import she kept was listed, once
    assert [pk for pk in seen if pk in kept_runs] == kept_runs


def test_retention_during_a_walk_of_an_imports_runs_skips_none_of_the_runs_it_keeps(alice):
    # Given an import whose history alternates failed runs (kept 90 days) and succeeded runs
    # (kept 30 days), all just past 30 days old
    now = timezone.now()
    imp = make_import(alice, SOURCE)
    failed = []
    for day in range(6):
        ago = timedelta(days=31 + day)
        failed.append(make_run(imp, "failed", queued_at=now - ago).pk)
        make_run(imp, "succeeded", queued_at=now - ago - timedelta(hours=1))
    client = client_for(alice)

    # When a script follows `next` two runs at a time and retention runs after the first page
    seen = walk(client, f"{API}/imports/{imp.pk}/runs/?page_size=2", delete_old_runs)

    # Then every failed run was listed, once
    assert [pk for pk in seen if pk in failed] == failed


def test_runs_queued_during_a_walk_make_no_run_listed_twice(alice):
    # Given an import with seven runs
    now = timezone.now()
    imp = make_import(alice, SOURCE)
    runs = [make_run(imp, queued_at=now - timedelta(minutes=m)).pk for m in range(1, 8)]
    client = client_for(alice)

    # When three runs are queued after the first page (page numbers shifted a run onto the
    # next page, listed again)
    seen = walk(
        client,
        f"{API}/runs/?page_size=3",
        lambda: [make_run(imp, "queued", queued_at=now + timedelta(seconds=s)) for s in range(3)],
    )

    # Then the walk lists each run that was there once, newest first
    assert seen == runs


def test_runs_queued_in_the_same_microsecond_are_each_listed_once(alice):
    # Given runs queued at the same instant (a batch of beat's ticks), newest first by id
    at = timezone.now()
    imp = make_import(alice, SOURCE)
    runs = sorted((make_run(imp, queued_at=at).pk for _ in range(7)), reverse=True)
    client = client_for(alice)

    # When a client walks them two at a time, forward and then back from the last page
    forward = walk(client, f"{API}/runs/?page_size=2")
    back = walk(client, f"{API}/runs/?page_size=2&page=last", link="previous")

    # Then each is listed once each way
    assert forward == runs
    assert sorted(back, reverse=True) == runs and len(back) == len(runs)


def test_next_keeps_the_filters_and_the_page_size_and_carries_a_cursor(alice):
    now = timezone.now()
    imp = make_import(alice, SOURCE)
    failed = [make_run(imp, "failed", queued_at=now - timedelta(hours=h)).pk for h in range(5)]
    make_run(imp, "succeeded", queued_at=now - timedelta(minutes=30))
    client = client_for(alice)

    body = client.get(f"{API}/runs/", {"status": "failed", "page_size": 2, "page": 2}).json()
    query = parse_qs(urlsplit(body["next"]).query)

    # `?page=2` still answers the second page; its links are places, not page numbers
    assert [run["id"] for run in body["results"]] == failed[2:4]
    assert set(query) == {"status", "page_size", "cursor"}
    assert query["status"] == ["failed"] and query["page_size"] == ["2"]
    assert [run["id"] for run in client.get(body["next"]).json()["results"]] == failed[4:]
    assert [run["id"] for run in client.get(body["previous"]).json()["results"]] == failed[:2]
    assert body["count"] == 5


def test_a_cursor_no_page_gave_is_a_404_and_one_with_a_page_number_a_400(alice):
    imp = make_import(alice, SOURCE)
    for _ in range(3):
        make_run(imp)
    client = client_for(alice)
    cursor = parse_qs(urlsplit(client.get(f"{API}/runs/?page_size=1").json()["next"]).query)

    for forged in ("abc", "eDEuMQ", "¹", "YTk5OTk5OTk5OTk5OTk5OTk5OS4x", "%00"):
        response = client.get(f"{API}/runs/", {"cursor": forged})
        assert response.status_code == 404, (forged, response.content)
        assert response.json()["detail"].startswith("this cursor is not one this list gave")
    both = client.get(f"{API}/runs/", {"cursor": cursor["cursor"][0], "page": 2})
    assert both.status_code == 400
    assert both.json()["errors"] == {
        "cursor": ["give `cursor` (from `next` or `previous`) or `page`, not both"]
    }
