"""The admin's run list past its exact count (hunt "surfaces", bug 1): the count there is
PostgreSQL's estimate, which the planner can put far below the rows (it multiplies the
selectivities of correlated filters: one import's failed runs). The list ended at the
estimate's last page, and any later page sent the user to the unfiltered list with "?e=1",
the older runs out of reach; and the estimate was shown as the count.

Here the exact limit is 3 and the estimate 1, so that a dozen runs behave as 30,000 did."""

import re

import pytest

from schedules.admin import ImportRunAdmin
from schedules.api import pagination
from schedules.models import ImportRun
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db

RUNS = "/admin/schedules/importrun/"


@pytest.fixture
def an_estimate_below_the_rows(monkeypatch):
    monkeypatch.setattr(ImportRunAdmin, "list_per_page", 2)
    monkeypatch.setattr(pagination.BoundedCountPaginator, "exact_count_limit", 3)
    monkeypatch.setattr(pagination, "planner_estimate", lambda queryset: 1)


@pytest.fixture
def failed_runs(alice):
    """Nine failed runs of products, newest first, among others of it and of another import."""
    products = make_import(alice, SOURCE)
    other = make_import(alice, SOURCE, name="orders", dataset="orders")
    for _ in range(3):
        make_run(products, "succeeded")
        make_run(other, "failed")
    for _ in range(9):
        make_run(products, "failed")
    failed = ImportRun.objects.filter(scheduled_import=products, status="failed")
    return products, list(failed.order_by("-queued_at", "-id").values_list("pk", flat=True))


def paginator_text(html: str) -> str:
    found = re.search(r'<p class="paginator">(.*?)</p>', html, re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1))).strip()


def test_every_page_of_a_list_past_its_estimated_count_can_be_opened(
    admin_client, an_estimate_below_the_rows, failed_runs
):
    # Given nine failed runs of products, which the estimate puts at four (two pages of two)
    products, expected = failed_runs
    query = {"scheduled_import__id__exact": products.pk, "status__exact": "failed"}

    # When each of their five pages is opened
    seen = []
    for page in range(1, 6):
        response = admin_client.get(RUNS, {**query, "p": page})

        # Then each answers with its runs, still filtered, and links the page after it
        assert response.status_code == 200, (page, response.get("Location"))
        cl = response.context["cl"]
        seen += [run.pk for run in cl.result_list]
        if page < 5:
            assert cl.paginator.num_pages > page
            assert f'href="?p={page + 1}&amp;' in response.content.decode()

    assert seen == expected


def test_an_estimated_count_is_said_to_be_about_and_the_last_page_knows_the_count(
    admin_client, an_estimate_below_the_rows, failed_runs
):
    products, _ = failed_runs
    query = {"scheduled_import__id__exact": products.pk, "status__exact": "failed"}

    first = admin_client.get(RUNS, query).content.decode()
    last = admin_client.get(RUNS, {**query, "p": 5}).content.decode()

    assert re.search(r"\babout \d+ import runs\b", paginator_text(first)), paginator_text(first)
    assert re.search(r"(^| )9 import runs", paginator_text(last)), paginator_text(last)
    assert "about" not in paginator_text(last)


def test_a_page_number_that_is_none_or_past_the_rows_is_a_bad_lookup_not_an_error(
    admin_client, an_estimate_below_the_rows, failed_runs
):
    products, _ = failed_runs
    query = {"scheduled_import__id__exact": products.pk, "status__exact": "failed"}

    for page in (0, -1, 10**20):
        response = admin_client.get(RUNS, {**query, "p": page})

        assert response.status_code == 302 and response["Location"].endswith("?e=1"), page


def test_a_page_past_the_rows_an_estimate_too_high_linked_to_shows_the_last_one(
    admin_client, failed_runs, monkeypatch
):
    # An estimate far above the rows (statistics not refreshed after retention deleted most
    # runs) linked to pages past them, which sent the user to the unfiltered list ("?e=1")
    monkeypatch.setattr(ImportRunAdmin, "list_per_page", 2)
    monkeypatch.setattr(pagination.BoundedCountPaginator, "exact_count_limit", 3)
    monkeypatch.setattr(pagination, "planner_estimate", lambda queryset: 50_000)
    products, expected = failed_runs
    query = {"scheduled_import__id__exact": products.pk, "status__exact": "failed"}

    response = admin_client.get(RUNS, {**query, "p": 500})

    assert response.status_code == 200
    cl = response.context["cl"]
    assert (cl.page_num, [run.pk for run in cl.result_list]) == (5, expected[8:])
    assert re.search(r"(^| )9 import runs", paginator_text(response.content.decode()))
