"""Regression: a deep page of an admin list (the run list's last page, `?p=10000` at a million
runs) was one OFFSET over whole rows: PostgreSQL read a million runs, their errors and counts,
to show a hundred, 2.8 s (4.4 s for a page past the end, read twice). A page past the first now
reads its ids first, along the index the list is ordered by, then only its own rows whole:
0.3 s (tests/bench/bench_admin_lists.py, "deep pages").
"""

import re

import pytest
from django.db import connection

from schedules.admin import ImportRunAdmin, ScheduledImportAdmin
from schedules.models import ImportRun, ScheduledImport
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def shown_ids(html: str, model: str) -> list[int]:
    found = re.findall(rf'href="/admin/schedules/{model}/(\d+)/change/', html)
    return list(dict.fromkeys(int(pk) for pk in found))


def recording(statements: list[str]):
    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    return record


def columns_read(sql: str) -> str:
    return sql.split(" FROM ")[0]


@pytest.mark.parametrize(
    ("admin_class", "path", "query", "order"),
    [
        (ImportRunAdmin, "importrun", {"status__exact": "failed"}, ("-queued_at", "-id")),
        (ImportRunAdmin, "importrun", {"q": "products"}, ("-queued_at", "-id")),
        (ScheduledImportAdmin, "scheduledimport", {}, ("id",)),
    ],
)
def test_a_page_past_the_first_skips_ids_only_and_shows_its_own_rows(
    admin_client, alice, monkeypatch, admin_class, path, query, order
):
    # given seven imports of a failed run each, two to an admin page
    monkeypatch.setattr(admin_class, "list_per_page", 2)
    for n in range(7):
        make_run(make_import(alice, SOURCE, name=f"products {n}"), "failed")
    model = ImportRun if admin_class is ImportRunAdmin else ScheduledImport
    expected = list(model.objects.order_by(*order).values_list("pk", flat=True))

    # when its second and last pages are opened
    statements: list[str] = []
    with connection.execute_wrapper(recording(statements)):
        second = admin_client.get(f"/admin/schedules/{path}/", {**query, "p": 2})
    last = admin_client.get(f"/admin/schedules/{path}/", {**query, "p": 4})

    # then each shows the rows of its place in the list's order
    assert second.status_code == 200 and last.status_code == 200
    assert shown_ids(second.content.decode(), path) == expected[2:4]
    assert shown_ids(last.content.decode(), path) == expected[6:]
    # and the statement that skips rows reads their ids, never whole rows
    skipping = [sql for sql in statements if " OFFSET " in sql]
    assert skipping
    for sql in skipping:
        assert '"error_message"' not in columns_read(sql), sql
        assert '"source_url"' not in columns_read(sql), sql
