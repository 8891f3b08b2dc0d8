"""The run list sorts only by the columns an index serves (hunt "surfaces", bug 3): by trigger,
status, duration, rows read or rows failed, PostgreSQL read and sorted every run of a year to
show a page of them (2.4 to 3.6 s at a million runs)."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db

RUNS = "/admin/schedules/importrun/"
UNINDEXED = ("trigger", "status_badge", "took", "rows_read", "rows_failed")


def test_the_run_list_offers_only_the_sorts_an_index_serves(admin_client, alice):
    make_run(make_import(alice, SOURCE), "failed")

    html = admin_client.get(RUNS).content.decode()

    headers = re.findall(r'<th scope="col" class="([^"]*)"', html)
    sortable = {
        column
        for classes in headers
        if "sortable" in classes.split()
        for column in re.findall(r"\bcolumn-(\w+)", classes)
    }
    assert {"id", "scheduled_import", "queued"} <= sortable
    assert not sortable & set(UNINDEXED)


@pytest.mark.parametrize("column", [4, 5, 7, 8, 9])
def test_a_sort_asked_by_hand_by_an_unindexed_column_is_not_done(admin_client, alice, column):
    # Given a bookmark of the list sorted by status (or trigger, duration, rows)
    make_run(make_import(alice, SOURCE), "failed")

    # When it is opened
    with CaptureQueriesContext(connection) as ctx:
        response = admin_client.get(RUNS, {"o": f"-{column}"})

    # Then the runs come in the list's own order, along its index
    assert response.status_code == 200
    pages = [q["sql"] for q in ctx.captured_queries if "LIMIT 101" in q["sql"]]
    assert pages
    for sql in pages:
        order = sql.split("ORDER BY")[1]
        for name in ("status", "trigger", "duration_ms", "rows_read", "rows_failed"):
            assert f'"{name}"' not in order, order
