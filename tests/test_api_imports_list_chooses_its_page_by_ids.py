"""`GET /imports/` chooses its page with the ORM as ids alone (scope, filters, order, page) and
reads the page's imports, their owners' and datasets' names and their runs in progress in
statements written once (schedules.listed_imports); with no filter asked, django-filter builds
nothing (its filters and form were a tenth of the list's CPU)."""

import pytest

from schedules import listed_imports, services
from schedules.api.filters import ImportFilter
from schedules.models import ScheduledImport
from tests.api_support import API, SOURCE, client_for, make_run, tables_compiled
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def imports(alice, bob):
    running = make_import(alice, SOURCE, name="running", dataset="one")
    make_run(running, "queued")
    make_run(running, "running", bytes_read=1, bytes_total=2)
    services.pause_import(make_import(alice, SOURCE, name="paused", dataset="two"))
    make_import(bob, SOURCE, name="bobs", dataset="bobs")
    return running


@pytest.fixture
def filtersets(monkeypatch):
    built = []
    original = ImportFilter.__init__

    def counted(self, *args, **kwargs):
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(ImportFilter, "__init__", counted)
    return built


def test_the_page_is_chosen_by_ids_and_read_without_compiling_its_rows(alice, imports):
    client = client_for(alice)

    # When alice lists her imports
    with tables_compiled() as compiled:
        response = client.get(f"{API}/imports/")

    # Then she sees her two, the running one with its newest active run, and the ORM compiled
    # only the count and the page's ids: no query of their runs, owners or datasets
    assert response.status_code == 200
    shown = response.json()["results"]
    assert [(i["name"], i["owner"], i["dataset"]) for i in shown] == [
        ("running", "alice", "one"),
        ("paused", "alice", "two"),
    ]
    assert shown[0]["active_run"]["status"] == "running" and shown[1]["active_run"] is None
    assert sorted(set(compiled)) == ["schedules_scheduledimport"], compiled


def test_no_filterset_is_built_when_no_filter_is_asked(alice, imports, filtersets):
    client = client_for(alice)

    # When alice lists her imports, then a page of them without a filter
    assert client.get(f"{API}/imports/").status_code == 200
    assert client.get(f"{API}/imports/?page=1&page_size=1").json()["count"] == 2

    # Then django-filter built nothing
    assert filtersets == []


def test_a_filter_asked_still_filters_and_is_checked(alice, imports, filtersets):
    client = client_for(alice)

    paused = client.get(f"{API}/imports/?status=paused").json()["results"]
    refused = client.get(f"{API}/imports/?status=sleeping")

    assert [i["name"] for i in paused] == ["paused"]
    assert refused.status_code == 400 and "status" in refused.json()["errors"]
    assert len(filtersets) == 2


def test_staff_see_every_owners_imports_with_their_owners_names(django_user_model, imports):
    ops = django_user_model.objects.create_user("ops", password="x", is_staff=True)

    shown = client_for(ops).get(f"{API}/imports/").json()["results"]

    assert [(i["name"], i["owner"]) for i in shown] == [
        ("running", "alice"),
        ("paused", "alice"),
        ("bobs", "bob"),
    ]


def test_an_import_deleted_after_the_page_was_chosen_is_left_out(alice, imports):
    # Given a page chosen, then one of its imports deleted before it is read
    chosen = [
        imports.pk,
        *ScheduledImport.objects.exclude(pk=imports.pk).values_list("pk", flat=True),
    ]
    services.delete_import(imports)

    # When the page is read
    page = listed_imports.page(chosen)

    # Then the others come in the chosen order, each with its runs in progress
    assert [imp.pk for imp in page] == chosen[1:]
    assert all(imp.active_runs == [] for imp in page)
