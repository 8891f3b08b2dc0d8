"""Regression: `?page=N` of a list paged by cursor (the runs, an import's runs, the imports,
an import's history and deliveries) was an OFFSET as deep as asked. PostgreSQL reads every
row it skips: at a year of history (a million runs, alice holding 800,000) `GET /runs/?page=16000`
read 800,000 of her runs, 0.4 s, and `?page=40000`, past her last page, as much to answer its
404; ten clients asking that kept the database's cores busy. A page by number now starts at most
MAX_PAGE_OFFSET rows down; deeper is a 400 that names the ways there (`next`, which goes on to
any depth by cursor, the filters by date, `?page=last`), before any row is read.
"""

import pytest
from django.db import connection

from schedules.api import pagination
from schedules.api.pagination import BoundedCountPaginator, RunCountPaginator
from tests.api_support import API, SOURCE, client_for, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def four_rows_deep(monkeypatch):
    # Pages of 2 by number reach page 3 (rows 5 and 6); counts are estimates past 3 rows, so
    # that a page past the count cannot be told from the count alone, as at a year of runs.
    monkeypatch.setattr(pagination, "MAX_PAGE_OFFSET", 4)
    monkeypatch.setattr(RunCountPaginator, "exact_count_limit", 3)
    monkeypatch.setattr(BoundedCountPaginator, "exact_count_limit", 3)


def recording(statements: list[str]):
    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    return record


@pytest.mark.parametrize(
    ("path", "hint"),
    [
        ("/runs/", "`since` and `until`"),
        ("/imports/{imp}/runs/", "`since` and `until`"),
        ("/imports/", "`?page=last`"),
    ],
)
def test_a_page_deeper_than_the_limit_is_refused_before_any_row_is_read(
    alice, four_rows_deep, path, hint
):
    # given ten imports, the first with ten runs
    imports = [make_import(alice, SOURCE, name=f"feed {n}") for n in range(10)]
    for _ in range(10):
        make_run(imports[0])
    client = client_for(alice)
    url = f"{API}{path.format(imp=imports[0].pk)}"

    # when a page within the limit, then one past it, are asked by number
    within = client.get(url, {"page": 3, "page_size": 2})
    statements: list[str] = []
    with connection.execute_wrapper(recording(statements)):
        deeper = client.get(url, {"page": 4, "page_size": 2})

    # then the deeper one is a 400 saying how to go on, and nothing was read past an OFFSET
    assert within.status_code in (200, 404), within.content
    assert deeper.status_code == 400, deeper.content
    message = deeper.json()["errors"]["page"][0]
    assert message.startswith("page 4 is too deep to ask by number (pages by number go to 3")
    assert "follow `next`" in message and hint in message
    assert statements and [sql for sql in statements if " OFFSET " in sql] == []


def test_following_next_goes_on_past_the_deepest_page_by_number(alice, four_rows_deep):
    # given ten runs of one import
    imp = make_import(alice, SOURCE)
    made = [make_run(imp).pk for _ in range(10)]
    client = client_for(alice)

    # when a client walks the runs by `next` from the first page
    url, seen = f"{API}/runs/?page_size=2", []
    while url:
        body = client.get(url).json()
        seen += [run["id"] for run in body["results"]]
        url = body["next"]

    # then it reaches every run, the ones no page number reaches included
    assert sorted(seen) == sorted(made)


def test_a_page_past_an_exact_count_or_past_any_list_is_still_a_404(alice):
    # given three runs (an exact count)
    imp = make_import(alice, SOURCE)
    for _ in range(3):
        make_run(imp)
    client = client_for(alice)

    # when pages past the end are asked, deep or not
    for page in (4, 400_000, 10**20):
        response = client.get(f"{API}/runs/", {"page": page, "page_size": 1})

        # then each is the 404 of a page past the end, not the refusal of a deep one
        assert response.status_code == 404, (page, response.content)
        assert response.json()["detail"] == f"page {page} is past the last page of this list"
