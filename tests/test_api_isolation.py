"""Alice's imports, runs and datasets do not exist for bob (404 on every endpoint, absent from
every list); staff see everyone's but change only their own through the API (403)."""

import pytest

from schedules.models import ImportRun, Record, ScheduledImport
from tests.api_support import API, SOURCE, client_for, import_body, make_run
from tests.factories import make_import, make_records

pytestmark = pytest.mark.django_db


@pytest.fixture
def alices(alice):
    imp = make_import(alice, SOURCE, dataset="alice-data")
    run = make_run(imp, "failed")
    make_records(imp.dataset, [Record(dataset=imp.dataset, key="A-1", data={}, content_hash=0)])
    return imp, run


# (method, path template, body): every endpoint that takes an id or a name.
OBJECT_ENDPOINTS = [
    ("get", "/imports/{imp}/", None),
    ("patch", "/imports/{imp}/", {"description": "mine now"}),
    ("put", "/imports/{imp}/", import_body()),
    ("delete", "/imports/{imp}/", None),
    ("post", "/imports/{imp}/pause", None),
    ("post", "/imports/{imp}/resume", None),
    ("post", "/imports/{imp}/cancel", None),
    ("post", "/imports/{imp}/run", None),
    ("get", "/imports/{imp}/runs/", None),
    ("get", "/imports/{imp}/stats/", None),
    ("get", "/imports/{imp}/history/", None),
    ("get", "/imports/{imp}/deliveries/", None),
    ("get", "/runs/{run}/", None),
    ("post", "/runs/{run}/cancel", None),
    ("post", "/runs/{run}/retry", None),
    ("get", "/datasets/alice-data/", None),
    ("get", "/datasets/alice-data/records/", None),
    ("get", "/datasets/alice-data/export", None),
    ("delete", "/datasets/alice-data/", None),
]
IDS = [f"{m} {p}" for m, p, _ in OBJECT_ENDPOINTS]


@pytest.mark.parametrize(("method", "path", "body"), OBJECT_ENDPOINTS, ids=IDS)
def test_another_users_object_answers_404_and_stays_untouched(alices, bob, method, path, body):
    imp, run = alices

    response = getattr(client_for(bob), method)(
        API + path.format(imp=imp.pk, run=run.pk), body, format="json"
    )

    assert response.status_code == 404, response.content
    assert (
        response.json() == {"detail": "No ScheduledImport matches the given query."}
        or (response.json()["detail"])
    )
    imp.refresh_from_db()
    assert (imp.status, imp.description, imp.name) == ("active", "", "products")
    assert imp.runs.count() == 1
    assert imp.dataset.records.count() == 1


@pytest.mark.parametrize("path", ["/imports/", "/runs/", "/datasets/"])
def test_lists_hold_only_my_own(alices, bob, path):
    make_run(make_import(bob, SOURCE, name="bobs", dataset="bob-data"))

    results = client_for(bob).get(API + path).json()["results"]

    assert len(results) == 1
    assert all(r.get("owner", "bob") == "bob" for r in results)
    assert all(r.get("import_name", "bobs") == "bobs" for r in results)


def test_a_user_may_reuse_another_users_import_and_dataset_names(alices, bob):
    response = client_for(bob).post(
        f"{API}/imports/", import_body(dataset="alice-data"), format="json"
    )

    assert response.status_code == 201
    assert ScheduledImport.objects.filter(name="products").count() == 2


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("sam", password="x", is_staff=True)


@pytest.mark.parametrize(
    "path",
    ["/imports/{imp}/", "/imports/{imp}/runs/", "/imports/{imp}/stats/", "/runs/{run}/",
     "/datasets/alice-data/", "/datasets/alice-data/records/", "/datasets/alice-data/export"],
)  # fmt: skip
def test_staff_read_everyones_objects(alices, staff, path):
    imp, run = alices

    response = client_for(staff).get(API + path.format(imp=imp.pk, run=run.pk))

    assert response.status_code == 200


def test_staff_lists_hold_everyones(alices, bob, staff):
    make_run(make_import(bob, SOURCE, name="bobs", dataset="bob-data"))
    client = client_for(staff)

    assert client.get(f"{API}/imports/").json()["count"] == 2
    assert client.get(f"{API}/runs/").json()["count"] == ImportRun.objects.count() == 2
    assert client.get(f"{API}/datasets/").json()["count"] == 2


@pytest.mark.parametrize(
    ("method", "path"),
    [("patch", "/imports/{imp}/"), ("delete", "/imports/{imp}/"), ("post", "/imports/{imp}/pause"),
     ("post", "/imports/{imp}/run"), ("delete", "/datasets/alice-data/"),
     ("post", "/runs/{run}/retry"), ("post", "/runs/{run}/cancel")],
)  # fmt: skip
def test_staff_cannot_change_another_users_import_through_the_api(alices, staff, method, path):
    imp, run = alices

    response = getattr(client_for(staff), method)(
        API + path.format(imp=imp.pk, run=run.pk), {}, format="json"
    )

    assert response.status_code == 403
    assert "staff" in response.json()["detail"]
    assert ScheduledImport.objects.get(pk=imp.pk).status == "active"
    assert imp.dataset.records.count() == 1
    assert list(imp.runs.values_list("status", flat=True)) == ["failed"]


def test_staff_pick_a_dataset_by_owner_when_names_collide(alices, bob, staff):
    make_import(bob, SOURCE, name="bobs", dataset="alice-data")
    client = client_for(staff)

    ambiguous = client.get(f"{API}/datasets/alice-data/records/")
    chosen = client.get(f"{API}/datasets/alice-data/records/", {"owner": "alice"})

    assert ambiguous.status_code == 400 and "owner" in ambiguous.json()["errors"]
    assert chosen.status_code == 200 and chosen.json()["count"] == 1
