"""A list's `count` is exact up to a limit and PostgreSQL's estimate past it, so that a year of
runs is not counted on every page (issue 15); short and filtered lists stay exact, and each
user's count covers only their own runs."""

import pytest

from schedules.api.pagination import RunCountPaginator
from tests.api_support import API, SOURCE, client_for, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def exact_up_to_three(monkeypatch):
    monkeypatch.setattr(RunCountPaginator, "exact_count_limit", 3)


def test_a_run_list_past_the_limit_counts_at_least_the_limit_and_still_pages(
    alice, exact_up_to_three
):
    imp = make_import(alice, SOURCE)
    for _ in range(6):
        make_run(imp)

    body = client_for(alice).get(f"{API}/runs/?page_size=2").json()

    assert body["count"] > 3
    assert len(body["results"]) == 2
    assert body["next"] is not None and body["previous"] is None


def test_short_and_filtered_lists_count_exactly_and_only_their_owners_runs(
    alice, bob, exact_up_to_three
):
    bobs = make_import(bob, SOURCE)
    for status in ("succeeded", "succeeded", "succeeded", "succeeded", "failed"):
        make_run(bobs, status)
    alices = make_import(alice, SOURCE)
    make_run(alices)
    make_run(alices, "failed")

    assert client_for(alice).get(f"{API}/runs/").json()["count"] == 2
    assert client_for(alice).get(f"{API}/imports/{alices.pk}/runs/").json()["count"] == 2
    assert client_for(bob).get(f"{API}/runs/?status=failed").json()["count"] == 1
