"""`GET /runs/` and `GET /imports/{id}/runs/` choose their page with the ORM as ids alone (scope,
filters, order, page) and read the page's runs with their import's name and their trigger's
username in one statement written once (schedules.listed_runs), as instances the serializer
reads exactly as it read the ORM's `.only()` ones (issue 15: compiling the page's select and
making its instances was three fifths of a run list's CPU)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from schedules import listed_runs
from schedules.api.serializers import RunSerializer
from schedules.api.views import RUN_LIST_COLUMNS
from schedules.models import ImportRun
from tests.api_support import API, SOURCE, client_for, make_run, queries_compiled
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs(alice, bob):
    """alice's runs of two imports, scheduled, manual (by her) and retried, and one of bob's."""
    now = timezone.now()
    imp = make_import(alice, SOURCE, name="products")
    failed = make_run(imp, "failed", queued_at=now - timedelta(hours=3), error_message="503")
    retried = make_run(
        imp,
        "succeeded",
        trigger="manual",
        triggered_by=alice,
        retry_of=failed,
        queued_at=now - timedelta(hours=2),
        file_digest="ab" * 32,
    )
    running = make_run(imp, "running", queued_at=now - timedelta(hours=1), bytes_read=1)
    other = make_import(alice, SOURCE, name="prices", dataset="prices")
    queued = make_run(other, "queued", queued_at=now)
    make_run(make_import(bob, SOURCE, name="bobs", dataset="bobs"), "succeeded")
    return imp, [queued, running, retried, failed]


def the_orms(queryset) -> list[ImportRun]:
    """The page as the lists read it before: the ORM's select of the shown columns."""
    return list(
        queryset.select_related("scheduled_import", "triggered_by")
        .only(*RUN_LIST_COLUMNS)
        .order_by("-queued_at", "-id")
    )


@pytest.mark.parametrize("path", ["/runs/", "/imports/{imp}/runs/"])
def test_the_page_is_chosen_by_ids_and_read_without_compiling_its_rows(alice, runs, path):
    imp, newest_first = runs
    client = client_for(alice)

    # When alice lists runs
    with queries_compiled() as compiled:
        response = client.get(API + path.format(imp=imp.pk))

    # Then she sees hers, newest first, and the ORM compiled their count and their ids alone,
    # with each one's place in the list for the links (`queued_at`): no select of their other
    # columns, their imports or their users
    assert response.status_code == 200
    expected = newest_first if path == "/runs/" else newest_first[1:]
    assert [run["id"] for run in response.json()["results"]] == [run.pk for run in expected]
    of_runs = [query for query in compiled if query.model is ImportRun]
    assert of_runs and not any(query.select_related for query in of_runs)
    assert {query.values_select for query in of_runs} == {("pk", "queued_at")}, [
        str(q) for q in of_runs
    ]


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/runs/", ""),
        ("/runs/", "?status=failed&status=succeeded"),
        ("/runs/", "?page=2&page_size=2"),
        ("/imports/{imp}/runs/", ""),
        ("/imports/{imp}/runs/", "?trigger=manual"),
    ],
)
def test_the_answer_is_what_the_orms_page_showed(alice, runs, path, query):
    imp, _ = runs
    scope = ImportRun.objects.filter(scheduled_import__owner=alice)
    if path != "/runs/":
        scope = scope.filter(scheduled_import=imp)
    shown = client_for(alice).get(API + path.format(imp=imp.pk) + query).json()["results"]
    ids = [run["id"] for run in shown]

    # When the same runs are read as the ORM read them
    orms = [run for run in the_orms(scope) if run.pk in ids]

    # Then every field shows the same, None for None
    assert shown and shown == RunSerializer(orms, many=True).data


def test_a_runs_fields_and_its_relations_are_loaded_and_deferred_as_only_left_them(alice, runs):
    _, newest_first = runs
    ids = [run.pk for run in newest_first]

    # When the page is read, and the same runs through the ORM
    ours = listed_runs.page(ids, RUN_LIST_COLUMNS)
    orms = the_orms(ImportRun.objects.filter(pk__in=ids))

    # Then each run, its import and its user hold the same values and defer the same fields
    assert [run.pk for run in ours] == [run.pk for run in orms] == ids
    for mine, theirs in zip(ours, orms, strict=True):
        assert mine.get_deferred_fields() == theirs.get_deferred_fields() != set()
        assert loaded(mine) == loaded(theirs)
        assert loaded(mine.scheduled_import) == loaded(theirs.scheduled_import)
        assert mine.scheduled_import.get_deferred_fields() == (
            theirs.scheduled_import.get_deferred_fields()
        )
        if theirs.triggered_by is None:
            assert mine.triggered_by is None
        else:
            assert loaded(mine.triggered_by) == loaded(theirs.triggered_by) != {}
            assert mine.triggered_by.get_deferred_fields() == (
                theirs.triggered_by.get_deferred_fields()
            )


def loaded(instance) -> dict:
    return {k: v for k, v in vars(instance).items() if k != "_state"}


def test_staff_see_every_owners_runs_with_their_imports_names(django_user_model, runs):
    ops = django_user_model.objects.create_user("ops", password="x", is_staff=True)

    shown = client_for(ops).get(f"{API}/runs/").json()["results"]

    assert sorted(run["import_name"] for run in shown) == [
        "bobs", "prices", "products", "products", "products",
    ]  # fmt: skip


def test_a_run_deleted_after_the_page_was_chosen_is_left_out(alice, runs):
    # Given a page chosen, then one of its runs deleted (retention) before it is read
    _, newest_first = runs
    chosen = [run.pk for run in newest_first]
    newest_first[1].delete()

    # When the page is read
    page = listed_runs.page(chosen, RUN_LIST_COLUMNS)

    # Then the others come in the chosen order, each with its import's name
    assert [run.pk for run in page] == chosen[:1] + chosen[2:]
    assert [run.scheduled_import.name for run in page] == ["prices", "products", "products"]
    assert listed_runs.page([], RUN_LIST_COLUMNS) == []
