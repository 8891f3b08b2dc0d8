"""A query parameter nothing reads is a 400 naming the allowed ones, never silently ignored
(`?last_run_status=` and `?key=` returned everything before they existed)."""

import pytest
from knox.models import AuthToken

from schedules.models import ScheduledImport
from tests.api_support import (
    API,
    SOURCE,
    api_schema,
    client_for,
    import_body,
    make_run,
    operation_url,
)
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        (
            "/imports/",
            "cursor, dataset, last_run_status, late, needs_attention, page, page_size, search, "
            "status",
        ),
        ("/runs/", "cursor, import_id, page, page_size, since, status, trigger, until"),
        ("/imports/{imp}/runs/", "cursor, page, page_size, since, status, trigger, until"),
        ("/imports/{imp}/stats/", "days"),
        ("/datasets/products/records/", "cursor, field, key, owner, page_size"),
        ("/datasets/products/export", "field, key, owner"),
        ("/datasets/products/", "owner"),
    ],
)
def test_an_unknown_query_parameter_is_a_400_naming_the_allowed_ones(alice, path, allowed):
    # Given an import of alice
    imp = make_import(alice, SOURCE)

    # When she sends a parameter the endpoint does not take
    response = client_for(alice).get(API + path.format(imp=imp.pk), {"colour": "red"})

    # Then it is a 400 on that parameter, listing the ones it takes
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {
        "colour": [f"unknown query parameter; this endpoint takes: {allowed}"]
    }


NONE = "unknown query parameter; this endpoint takes no query parameters"


@pytest.mark.parametrize(
    ("method", "path", "said"),
    [
        ("post", "/imports/{imp}/run", NONE),
        ("post", "/imports/{imp}/pause", NONE),
        ("post", "/imports/{imp}/resume", NONE),
        ("post", "/imports/{imp}/cancel", NONE),
        ("get", "/imports/{imp}/", NONE),
        ("patch", "/imports/{imp}/", "unknown query parameter; this endpoint takes: dry_run"),
        ("post", "/imports/", "unknown query parameter; this endpoint takes: dry_run"),
        ("post", "/imports/check", NONE),
        (
            "get",
            "/imports/{imp}/history/",
            "unknown query parameter; this endpoint takes: cursor, page, page_size",
        ),
        (
            "get",
            "/imports/{imp}/deliveries/",
            "unknown query parameter; this endpoint takes: cursor, page, page_size",
        ),
        ("get", "/runs/{run}/", NONE),
        ("post", "/runs/{run}/cancel", NONE),
        ("post", "/runs/{run}/retry", NONE),
        ("get", "/me", NONE),
    ],
)
def test_an_endpoint_on_one_object_names_only_what_it_reads(alice, method, path, said):
    # Given an import of alice's with a failed run
    imp = make_import(alice, SOURCE)
    run = make_run(imp, "failed")

    # When she sends a parameter the endpoint does not take
    url = API + path.format(imp=imp.pk, run=run.pk) + "?colour=red"
    response = getattr(client_for(alice), method)(url, {}, format="json")

    # Then the 400 names what it does take: not the lists' filters and pages it never reads
    # (the trigger's named `page` and `page_size`)
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {"colour": [said]}
    # and nothing was done
    imp.refresh_from_db()
    assert (imp.status, imp.runs.count()) == ("active", 1)


def test_an_action_refuses_parameters_too(alice):
    imp = make_import(alice, SOURCE)

    response = client_for(alice).post(f"{API}/imports/{imp.pk}/pause?force=1")

    assert response.status_code == 400 and "force" in response.json()["errors"]
    imp.refresh_from_db()
    assert imp.status == "active"


def test_known_parameters_still_work(alice):
    imp = make_import(alice, SOURCE)
    make_run(imp, "failed")

    response = client_for(alice).get(f"{API}/runs/", {"status": "failed", "page_size": 5})

    assert response.status_code == 200 and response.json()["count"] == 1


def documented_operations() -> list[tuple[str, str, list[str]]]:
    """Every operation of the OpenAPI schema, with the query parameters it documents."""
    schema = api_schema()
    return [
        (method, path, sorted(p["name"] for p in op.get("parameters", []) if p["in"] == "query"))
        for path, operations in schema["paths"].items()
        for method, op in operations.items()
    ]


@pytest.mark.parametrize(("method", "path", "documented"), documented_operations())
def test_every_endpoint_refuses_what_it_does_not_document(alice, method, path, documented):
    """The schema, the 400 and what the endpoint reads are one list: `/health` and the token
    endpoints took anything, `/datasets/` took `owner` and ignored it, and the schema left out
    `dry_run`, the export's filters and the dataset list's `owner`."""
    # Given an import of alice's with a failed run and a dataset, and her one token
    imp = make_import(alice, SOURCE)
    run = make_run(imp, "failed")
    client = client_for(alice)
    url = operation_url(path, imp, run)
    body = {"username": "alice", "password": "alice-password"} if "token" in path else {}

    # When she sends a parameter the endpoint does not document
    response = getattr(client, method)(f"{url}?colour=red", body, format="json")

    # Then it is a 400 naming exactly what the schema documents
    takes = f"takes: {', '.join(documented)}" if documented else "takes no query parameters"
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {
        "colour": [f"unknown query parameter; this endpoint {takes}"]
    }
    # and nothing was done: no token made or revoked, nothing changed or deleted
    imp.refresh_from_db()
    assert (imp.status, imp.runs.count(), imp.dataset.name) == ("active", 1, "products")
    assert AuthToken.objects.filter(user=alice).count() == 1


def test_the_schema_and_its_page_refuse_what_they_do_not_read(alice):
    client = client_for(alice)

    assert client.get(f"{API}/schema/", {"format": "json"}).status_code == 200
    for path in ("/schema/", "/docs/"):
        response = client.get(API + path, {"colour": "red"})
        assert response.status_code == 400 and "colour" in response.json()["errors"]


@pytest.mark.parametrize("value", ["on", "maybe", "True!"])
def test_a_dry_run_it_does_not_understand_saves_nothing(alice, value):
    # `?dry_run=on` was read as false: the import was saved for real
    response = client_for(alice).post(
        f"{API}/imports/?dry_run={value}", import_body(), format="json"
    )

    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == ["dry_run"]
    assert not ScheduledImport.objects.exists()


def test_the_dataset_list_reads_owner(alice, bob, django_user_model):
    staff = django_user_model.objects.create_user("root", is_staff=True)
    make_import(alice, SOURCE)
    make_import(bob, SOURCE, dataset="prices")

    def owners(query: dict) -> list[tuple[str, str]]:
        response = client_for(staff).get(f"{API}/datasets/", query)
        assert response.status_code == 200, response.content
        return [(d["owner"], d["name"]) for d in response.json()["results"]]

    assert owners({}) == [("bob", "prices"), ("alice", "products")]
    assert owners({"owner": "bob"}) == [("bob", "prices")]
    assert owners({"owner": "nobody"}) == []


@pytest.mark.parametrize(
    ("path", "asked", "most"),
    [
        ("/imports/", "abc", 500),
        ("/runs/", "0", 500),
        ("/imports/{imp}/runs/", "501", 500),
        ("/imports/{imp}/history/", "-1", 500),
        ("/datasets/products/records/", "1001", 1000),
        ("/datasets/products/records/", "2.5", 1000),
        # a superscript two: str.isdigit() took it, int() did not (a 500)
        ("/datasets/products/records/", "²", 1000),
        ("/runs/", "²", 500),
    ],
)
def test_a_page_size_a_list_cannot_give_is_a_400(alice, path, asked, most):
    # DRF answered the default 50 rows for `abc` or `0`, and its maximum for more: a client
    # reading one page missed the rest without a word
    imp = make_import(alice, SOURCE)

    response = client_for(alice).get(API + path.format(imp=imp.pk), {"page_size": asked})

    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {
        "page_size": [f"{asked!r} is not a whole number from 1 to {most}"]
    }


def test_a_page_size_within_the_limits_is_taken(alice):
    imp = make_import(alice, SOURCE)
    for _ in range(3):
        make_run(imp, "failed")

    body = client_for(alice).get(f"{API}/runs/", {"page_size": 2}).json()

    assert (len(body["results"]), body["count"]) == (2, 3)


def test_the_schema_gives_each_lists_page_size_limits():
    schema = api_schema()

    limits = {
        path: next(
            (p["schema"]["minimum"], p["schema"]["maximum"])
            for p in op["get"]["parameters"]
            if p["name"] == "page_size"
        )
        for path, op in schema["paths"].items()
        if any(p["name"] == "page_size" for p in op.get("get", {}).get("parameters", []))
    }

    assert limits[f"{API}/runs/"] == (1, 500)
    assert limits[f"{API}/datasets/{{name}}/records/"] == (1, 1000)
    assert set(limits.values()) == {(1, 500), (1, 1000)}


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/imports/", "status=active&status=paused"),
        ("/runs/", "import_id=1&import_id=2"),
        ("/imports/{imp}/runs/", "since=2026-01-01T00:00:00Z&since=2026-06-01T00:00:00Z"),
        ("/datasets/products/records/", "key=A-1&key=B-2"),
        ("/datasets/products/", "owner=alice&owner=bob"),
        ("/imports/{imp}/stats/", "days=7&days=30"),
        ("/runs/", "page_size=5&page_size=10"),
    ],
)
def test_a_parameter_that_takes_one_value_given_twice_is_a_400(alice, path, query):
    # django-filter and DRF read the last value: `?status=active&status=paused` listed the
    # paused imports alone, as if the other had not been asked for
    imp = make_import(alice, SOURCE)
    name = query.split("=")[0]

    response = client_for(alice).get(f"{API}{path.format(imp=imp.pk)}?{query}")

    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {name: ["takes one value; it was given 2 times"]}


def test_the_repeatable_filters_still_take_several_values(alice):
    imp = make_import(alice, SOURCE)
    make_run(imp, "failed")
    make_run(imp, "partial")
    make_run(imp, "succeeded")
    client = client_for(alice)

    runs = client.get(f"{API}/runs/?status=failed&status=partial").json()
    imports = client.get(f"{API}/imports/?last_run_status=failed&last_run_status=succeeded")
    records = client.get(f"{API}/datasets/products/records/?field=a:1&field=b:2")

    assert sorted(run["status"] for run in runs["results"]) == ["failed", "partial"]
    assert imports.status_code == 200 and records.status_code == 200


@pytest.mark.parametrize(
    ("page", "status", "said"),
    [
        ("abc", 400, {"errors": {"page": ["'abc' is not a page number (1, 2, ... or last)"]}}),
        ("0", 400, {"errors": {"page": ["'0' is not a page number (1, 2, ... or last)"]}}),
        ("²", 400, {"errors": {"page": ["'²' is not a page number (1, 2, ... or last)"]}}),
        ("9", 404, {"detail": "page 9 is past the last page of this list"}),
        # int() refuses past 4,300 digits: a 500 (API hunt)
        (
            "9" * 5000,
            400,
            {"detail": "page: '" + "9" * 5000 + "' is not a page number (1, 2, ... or last)"},
        ),
    ],
)
def test_a_page_that_is_not_there_is_said_in_our_words(alice, page, status, said):
    # DRF answered "Invalid page." for each, a 404 even for a page that is no number
    imp = make_import(alice, SOURCE)
    make_run(imp, "failed")

    response = client_for(alice).get(f"{API}/runs/", {"page": page})

    assert response.status_code == status, response.content
    body = response.json()
    assert {key: body[key] for key in said} == said


def test_the_last_page_is_still_last(alice):
    imp = make_import(alice, SOURCE)
    for _ in range(3):
        make_run(imp, "failed")

    body = client_for(alice).get(f"{API}/runs/", {"page": "last", "page_size": 2}).json()

    assert len(body["results"]) == 1 and body["next"] is None
