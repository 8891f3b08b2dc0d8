"""Regression (API hunt, finding 8): `?page=last` on a run list whose `count` is PostgreSQL's
estimate, above its rows, answered an empty page, and its `previous` was a 404.

What a client met before: reading the run log oldest first (`?page=last`, then `previous`
until there is none), it got an empty 200 page, then `404 "page 49 is past the last page of
this list"`, and read no run at all. Past 1,000 runs `count` is the planner's estimate, above
the rows as often as below (a user whose imports run less often than the average; right after
retention deleted much of the log). `?page=last` now reads the list oldest first: the real
last runs, whatever the estimate, and `previous` leads back through every run.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from schedules.api import pagination
from schedules.api.pagination import RunCountPaginator
from tests.api_support import API, SOURCE, client_for, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def exact_up_to_three(monkeypatch):
    monkeypatch.setattr(RunCountPaginator, "exact_count_limit", 3)


@pytest.fixture
def an_estimate_above_the_rows(monkeypatch, exact_up_to_three):
    # Past 3 runs, the planner expects 100 (stale statistics after a delete).
    monkeypatch.setattr(pagination, "planner_estimate", lambda queryset: 100)


def newest_first(imp, how_many):
    now = timezone.now()
    return [make_run(imp, queued_at=now - timedelta(minutes=m)).pk for m in range(how_many)]


@pytest.mark.parametrize("path", ["/runs/", "/imports/{imp}/runs/"])
def test_walking_back_from_the_last_page_reaches_every_run(alice, an_estimate_above_the_rows, path):
    # Given alice's import with six runs, the count estimated at a hundred
    imp = make_import(alice, SOURCE)
    runs = newest_first(imp, 6)
    client = client_for(alice)

    # When a client reads the log oldest first: the last page, then `previous` until none
    answer = client.get(API + path.format(imp=imp.pk), {"page": "last", "page_size": 4})
    assert answer.status_code == 200, answer.json()
    pages = [[run["id"] for run in answer.json()["results"]]]
    assert answer.json()["next"] is None and answer.json()["count"] == 100
    while answer.json()["previous"]:
        answer = client.get(answer.json()["previous"])
        assert answer.status_code == 200, answer.json()
        pages.append([run["id"] for run in answer.json()["results"]])

    # Then the last page holds the oldest runs, and going back it read every run once
    assert pages == [runs[2:], runs[:2]]


def test_the_last_page_by_an_exact_count_is_the_last_numbered_page(alice, exact_up_to_three):
    # Given three runs, counted exactly
    imp = make_import(alice, SOURCE)
    runs = newest_first(imp, 3)
    client = client_for(alice)

    # When a client asks for the last page two at a time
    last = client.get(f"{API}/runs/", {"page": "last", "page_size": 2}).json()
    second = client.get(f"{API}/runs/", {"page": 2, "page_size": 2}).json()

    # Then it is page 2, the oldest run alone, and `previous` leads to page 1
    assert [run["id"] for run in last["results"]] == [run["id"] for run in second["results"]]
    assert [run["id"] for run in last["results"]] == runs[2:]
    assert last["next"] is None and last["count"] == 3
    back = client.get(last["previous"]).json()
    assert [run["id"] for run in back["results"]] == runs[:2] and back["previous"] is None


def test_the_last_page_of_an_empty_list_is_empty(alice, an_estimate_above_the_rows):
    imp = make_import(alice, SOURCE)

    response = client_for(alice).get(f"{API}/imports/{imp.pk}/runs/", {"page": "last"})

    assert response.status_code == 200
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}
