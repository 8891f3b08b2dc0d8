"""The admin's lists at a year of history (issue 15): what every page asks PostgreSQL stays
bounded by the page, not by the million runs behind it (schedules.admin_lists).

Measured in tests/bench/bench_admin_lists.py. Before: the run list counted every run twice
(its filtered count and the "of M total") and read every run's date for its date drill-down
(0.9 s a page at 1M runs); its search joined each run to its import and owner (6.5 s); and each
row's checkbox was rendered through the form templates (38 % of a page's time)."""

import re
import types

import pytest
from django.contrib import admin as django_admin
from django.db import connection
from django.test.utils import CaptureQueriesContext

from schedules.admin import ScheduledImportAdmin
from schedules.models import ImportRun, ScheduledImport
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db

RUNS = "/admin/schedules/importrun/"
# `admin_client`: pytest-django's, a logged-in superuser.


@pytest.fixture
def pages_of_two(monkeypatch):
    """The run list shows two runs a page: a few runs make several pages."""
    monkeypatch.setattr(django_admin.site._registry[ImportRun], "list_per_page", 2)


@pytest.mark.parametrize("query", ["", "?status__exact=failed", "?q=products", "?p=2"])
def test_the_run_list_never_counts_or_reads_every_run(admin_client, alice, pages_of_two, query):
    # Given more runs than a page holds, of each status
    imp = make_import(alice, SOURCE)
    for status in ("succeeded", "failed", "partial") * 3:
        make_run(imp, status)

    # When the run list is shown
    with CaptureQueriesContext(connection) as ctx:
        response = admin_client.get(RUNS + query)

    # Then every count over runs stops at a limit, and no query reads every run's date
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 2
    counts = [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"]]
    assert counts, "a list of several pages says how many runs it has"
    for sql in counts:
        assert re.search(r"LIMIT \d+\) subquery", sql), sql
    assert not [q["sql"] for q in ctx.captured_queries if "DATE_TRUNC" in q["sql"]]


def test_a_first_page_that_holds_everything_is_not_counted_apart(admin_client, alice, bob):
    # Given two runs of alice's among many of bob's
    products = make_import(alice, SOURCE)
    mine = [make_run(products, status) for status in ("failed", "succeeded")]
    theirs = make_import(bob, SOURCE, name="orders", dataset="orders")
    for _ in range(3):
        make_run(theirs, "succeeded")

    # When a search finds alice's
    with CaptureQueriesContext(connection) as ctx:
        response = admin_client.get(RUNS, {"q": "alice"})

    # Then the runs are read once, without a count, and the list says how many there are
    cl = response.context["cl"]
    assert {run.pk for run in cl.result_list} == {run.pk for run in mine}
    assert cl.result_count == 2 and not cl.multi_page
    assert "2 results" in response.content.decode()
    runs_read = [q["sql"] for q in ctx.captured_queries if 'FROM "schedules_importrun"' in q["sql"]]
    assert len(runs_read) == 1 and "COUNT(" not in runs_read[0], runs_read


def test_every_page_shows_what_djangos_own_change_list_shows(admin_client, alice, pages_of_two):
    imp = make_import(alice, SOURCE)
    for status in ("succeeded", "failed", "partial", "succeeded", "failed"):
        make_run(imp, status)
    run_admin = django_admin.site._registry[ImportRun]

    def shown(query: dict) -> tuple:
        cl = admin_client.get(RUNS, query).context["cl"]
        return [r.pk for r in cl.result_list], cl.result_count, cl.multi_page, cl.can_show_all

    for query in ({}, {"p": 2}, {"p": 3}, {"q": "failed"}, {"status__exact": "partial"}):
        ours = shown(query)
        run_admin.get_changelist = types.MethodType(
            django_admin.ModelAdmin.get_changelist, run_admin
        )
        try:
            djangos = shown(query)
        finally:
            del run_admin.get_changelist
        assert ours == djangos, query


def test_the_run_search_finds_runs_by_import_owner_and_error(admin_client, alice, bob):
    # Given alice's products, bob's orders with a failed run, and a run of each
    products = make_import(alice, SOURCE)
    orders = make_import(bob, SOURCE, name="orders", dataset="orders")
    kept = make_run(products, "succeeded")
    failed = make_run(orders, "failed", error_message="The source answered HTTP 503.")
    other = make_run(orders, "succeeded")

    def found(term: str) -> set[int]:
        response = admin_client.get(RUNS, {"q": term})
        assert response.status_code == 200
        return {run.pk for run in response.context["cl"].result_list}

    # Then a word of an import's name, of its owner, or of a run's error finds those runs
    assert found("product") == {kept.pk}
    assert found("BOB") == {failed.pk, other.pk}
    assert found("503") == {failed.pk}
    # and several words must all match, a quoted phrase as one
    assert found("bob 503") == {failed.pk}
    assert found('"HTTP 503"') == {failed.pk}
    assert found("alice 503") == set()


def test_the_run_search_asks_about_imports_apart_from_runs(admin_client, alice):
    make_run(make_import(alice, SOURCE), "failed", error_message="boom")

    with CaptureQueriesContext(connection) as ctx:
        admin_client.get(RUNS, {"q": "alice"})

    # The names and owners are searched among imports (a subquery), never OR'ed with every
    # run's error across a join of runs, imports and users
    searches = [q["sql"] for q in ctx.captured_queries if "LIKE" in q["sql"]]
    assert searches
    for sql in searches:
        assert '"schedules_scheduledimport"."name"::text) LIKE' not in sql, sql
        assert '"auth_user"."username"::text) LIKE' not in sql, sql
        assert "IN (SELECT" in sql, sql


def test_a_rows_checkbox_is_djangos_own_markup(alice):
    # Given an import whose name needs escaping
    imp = make_import(alice, SOURCE, name='<b>"Q&A"</b>')
    import_admin = ScheduledImportAdmin(ScheduledImport, django_admin.site)

    # When ours and Django's render its checkbox
    ours = import_admin.action_checkbox(imp)
    djangos = django_admin.ModelAdmin.action_checkbox(import_admin, imp)

    # Then they are the same markup, escaped once
    assert str(ours) == str(djangos)
    assert "&lt;b&gt;&quot;Q&amp;A&quot;" in ours
