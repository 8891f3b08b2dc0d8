"""Regression: walking an import's deliveries (`GET /imports/{id}/deliveries/`), its history
(`GET /imports/{id}/history/`) or the imports (`GET /imports/`) by following `next` skipped
rows when rows already read were deleted between two pages, and listed a row twice when rows
were added meanwhile, as the run lists did before they paged by cursor.

What a client met before: pages were OFFSETs (`next` was `?page=2`, ...). The hourly retention
job deletes delivered notifications past 30 days (failed ones stay 90, interleaved with them)
and the history's run events past 30 days (the import's changes stay); a user deletes imports.
Every later row moved up one place per deletion, and the row crossing the page boundary was
never listed, without a word. Now `next` and `previous` carry the place of the page's last (or
first) row in the list's order, as the run lists' do (KeysetPagination).
"""

import base64
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from auditlog.models import LogEntry
from django.utils import timezone

from schedules import history
from schedules.models import NotificationDelivery
from tasks.maintenance import delete_old_runs
from tests.api_support import API, SOURCE, api_schema, client_for, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def ages(settings):
    settings.RUN_RETENTION_DAYS = 30
    settings.FAILED_RUN_RETENTION_DAYS = 90


def walk(client, url, between=lambda: None, link="next", tag="id"):
    """Every row the pages show (by `tag`), in order, following `link` from `url`; `between()`
    runs after the first page, as another client or the retention job would."""
    first = client.get(url)
    assert first.status_code == 200, first.json()
    seen = [row[tag] for row in first.json()["results"]]
    between()
    url = first.json()[link]
    while url:
        answer = client.get(url)
        assert answer.status_code == 200, (url, answer.json())
        seen += [row[tag] for row in answer.json()["results"]]
        url = answer.json()[link]
    return seen


def delivery(imp, status, ago):
    return NotificationDelivery.objects.create(
        scheduled_import=imp, event="succeeded", channel="email", target="a@example.com",
        status=status, created_at=timezone.now() - ago,
    ).pk  # fmt: skip


def event(imp, name, ago, tag):
    """A history entry of `imp` told apart by its `run` (`tag`)."""
    entry = history.record_event(imp, name, None, run=tag)
    LogEntry.objects.filter(pk=entry.pk).update(timestamp=timezone.now() - ago)
    return tag


def test_retention_during_a_walk_of_the_deliveries_skips_none_of_those_it_keeps(alice):
    # Given an import whose log alternates failed deliveries (kept 90 days) and delivered
    # ones (kept 30 days), all just past 30 days old
    imp = make_import(alice, SOURCE)
    failed = []
    for day in range(6):
        failed.append(delivery(imp, "failed", timedelta(days=31 + day)))
        delivery(imp, "delivered", timedelta(days=31 + day, hours=1))
    client = client_for(alice)

    # When a script follows `next` two at a time and retention runs after the first page
    seen = walk(client, f"{API}/imports/{imp.pk}/deliveries/?page_size=2", delete_old_runs)

    # Then every failed delivery was listed, once, newest first
    assert [pk for pk in seen if pk in failed] == failed


def test_deliveries_made_during_a_walk_make_none_listed_twice(alice):
    # Given seven deliveries
    imp = make_import(alice, SOURCE)
    made = [delivery(imp, "delivered", timedelta(minutes=m)) for m in range(1, 8)]
    client = client_for(alice)

    # When three more are made after the first page
    seen = walk(
        client,
        f"{API}/imports/{imp.pk}/deliveries/?page_size=3",
        lambda: [delivery(imp, "pending", timedelta(seconds=-s)) for s in range(3)],
    )

    # Then the walk lists each one that was there once, newest first
    assert seen == made


def test_retention_during_a_walk_of_the_history_skips_none_of_the_entries_it_keeps(alice):
    # Given an import's history alternating entries kept for ever (a host key accepted) and
    # run events past 30 days, which retention deletes
    imp = make_import(alice, SOURCE)
    LogEntry.objects.update(timestamp=timezone.now() - timedelta(days=400))
    kept = []
    for day in range(6):
        kept.append(event(imp, "host key accepted", timedelta(days=31 + day), 100 + day))
        event(imp, "run triggered", timedelta(days=31 + day, hours=1), 200 + day)
    client = client_for(alice)

    # When a script follows `next` two at a time and retention runs after the first page
    seen = walk(client, f"{API}/imports/{imp.pk}/history/?page_size=2", delete_old_runs, tag="run")

    # Then every entry kept was listed, once, newest first (and the import's creation last)
    assert [tag for tag in seen if tag in kept] == kept
    assert seen[-1] is None and seen.count(None) == 1


def test_deleting_imports_during_a_walk_of_the_imports_skips_none_of_the_others(alice):
    # Given eight imports
    imports = [make_import(alice, SOURCE, name=f"i{n}", dataset=f"d{n}") for n in range(8)]
    client = client_for(alice)

    # When a script follows `next` three at a time, and the first page's imports are deleted
    # after it (and one more is created)
    def meanwhile():
        for imp in imports[:3]:
            assert client.delete(f"{API}/imports/{imp.pk}/").status_code == 204
        make_import(alice, SOURCE, name="new", dataset="new")

    seen = walk(client, f"{API}/imports/?page_size=3", meanwhile)

    # Then every import was listed once, by id, the new one last
    assert seen[:-1] == [imp.pk for imp in imports] and seen[-1] > imports[-1].pk


def lists(alice):
    """Each list (a path) with its rows in its order, ten of them (by `tag`)."""
    imp = make_import(alice, SOURCE, name="the-one", dataset="the-one")
    LogEntry.objects.update(timestamp=timezone.now() - timedelta(days=400))
    deliveries = [delivery(imp, "delivered", timedelta(minutes=m)) for m in range(10)]
    entries = [event(imp, "host key accepted", timedelta(minutes=m), m) for m in range(9)]
    imports = [imp.pk] + [
        make_import(alice, SOURCE, name=f"i{n}", dataset=f"d{n}").pk for n in range(9)
    ]
    return {
        f"/imports/{imp.pk}/deliveries/": ("id", deliveries),
        f"/imports/{imp.pk}/history/": ("run", [*entries, None]),
        "/imports/": ("id", imports),
    }


@pytest.mark.parametrize("which", ["deliveries", "history", "imports"])
def test_page_n_links_by_cursor_previous_walks_back_and_last_is_the_end(alice, which):
    # Given a list of ten rows
    path, (tag, rows) = next(
        (path, listed) for path, listed in lists(alice).items() if which in path
    )
    client = client_for(alice)

    # When a client asks for page 2 of three rows
    body = client.get(API + path, {"page": 2, "page_size": 3}).json()

    # Then it is the fourth to the sixth row, its links are cursors, both ways
    assert [row[tag] for row in body["results"]] == rows[3:6] and body["count"] == 10
    assert set(parse_qs(urlsplit(body["next"]).query)) == {"page_size", "cursor"}
    assert [row[tag] for row in client.get(body["next"]).json()["results"]] == rows[6:9]
    back = client.get(body["previous"]).json()
    assert [row[tag] for row in back["results"]] == rows[:3] and back["previous"] is None

    # And the last page is the last row, from which `previous` walks back through every row
    last = client.get(API + path, {"page": "last", "page_size": 3}).json()
    assert [row[tag] for row in last["results"]] == rows[9:] and last["next"] is None
    backwards = walk(client, f"{API}{path}?page=last&page_size=3", link="previous", tag=tag)
    assert backwards == rows[9:] + rows[6:9] + rows[3:6] + rows[:3]
    assert walk(client, f"{API}{path}?page_size=3", tag=tag) == rows


def cursor_of(client, url):
    return parse_qs(urlsplit(client.get(url).json()["next"]).query)["cursor"][0]


@pytest.mark.parametrize(
    ("which", "tag"), [("deliveries", "d"), ("history", "h"), ("imports", "i")]
)
def test_a_cursor_this_list_did_not_give_is_a_404_and_one_with_a_page_a_400(alice, which, tag):
    # Given the lists, and a run list's cursor
    paths = list(lists(alice))
    path = next(path for path in paths if which in path)
    imp = make_import(alice, SOURCE, name="runs", dataset="runs")
    for _ in range(2):
        make_run(imp)
    client = client_for(alice)
    foreign = [cursor_of(client, f"{API}/runs/?page_size=1")] + [
        cursor_of(client, f"{API}{other}?page_size=1") for other in paths if other != path
    ]
    # (a place past the largest id, and one with too few parts, each of this list's kind)
    past_ids = base64.urlsafe_b64encode(f"{tag}a1.{2**63}".encode()).decode()
    too_few = base64.urlsafe_b64encode(f"{tag}a".encode()).decode()

    # When a client sends a forged cursor, a run list's or another of these lists' cursor
    for forged in ("abc", "eDEuMQ", "¹", "%00", past_ids, too_few, *foreign):
        response = client.get(API + path, {"cursor": forged})

        # Then each is a 404 in words
        assert response.status_code == 404, (forged, response.content)
        assert response.json()["detail"].startswith("this cursor is not one this list gave")
    # and this list's own cursor with a page number is a 400
    both = client.get(
        API + path, {"cursor": cursor_of(client, f"{API}{path}?page_size=1"), "page": 2}
    )
    assert both.status_code == 400
    assert both.json()["errors"] == {
        "cursor": ["give `cursor` (from `next` or `previous`) or `page`, not both"]
    }


def test_the_schema_describes_the_cursor_of_each_list_that_pages_by_one():
    paths = api_schema()["paths"]

    for path in ("/imports/", "/imports/{id}/deliveries/", "/imports/{id}/history/"):
        (cursor,) = [p for p in paths[API + path]["get"]["parameters"] if p["name"] == "cursor"]
        assert cursor["in"] == "query" and cursor["schema"] == {"type": "string"}
        assert "`next` or `previous`" in cursor["description"]
