"""Regression (API hunt): the OpenAPI schema left out answers the API gives and the README lists.

A client generated from `/api/v1/schema/` (openapi-generator, openapi-typescript, ...) knows only
what is declared: an undeclared status is raised as an unexpected error, its `detail` and
`Retry-After` unread. The schema declared no 412 (If-Match refused) on PUT, PATCH and DELETE of
an import nor on its pause, resume and cancel, and no `If-Match` header, so a generated client
could not even send the precondition, nor an `ETag` to take it from; no 429 on
`POST /imports/check`, on a dry run (`?dry_run=true` of a create or an update) or on
`POST /auth/token`; and neither the 413 of a body too large nor the 503 of a database away.
"""

import json

import pytest

from tests.api_support import API, SOURCE, client_for
from tests.factories import make_import

pytestmark = pytest.mark.django_db

IMPORT = "/api/v1/imports/{id}/"
ASKS_IF_MATCH = [
    ("put", IMPORT), ("patch", IMPORT), ("delete", IMPORT),
    ("post", IMPORT + "pause/"), ("post", IMPORT + "resume/"), ("post", IMPORT + "cancel/"),
]  # fmt: skip
SENDS_ETAG = [("get", IMPORT)] + [answer for answer in ASKS_IF_MATCH if answer[0] != "delete"]
THROTTLED = [
    ("post", "/api/v1/imports/check/"),
    ("post", "/api/v1/imports/"),  # ?dry_run=true: the check's throttle
    ("patch", IMPORT),
    ("put", IMPORT),
    ("post", "/api/v1/auth/token/"),
    ("post", IMPORT + "run/"),
    ("post", "/api/v1/runs/{id}/retry/"),
]


@pytest.fixture
def schema(alice):
    answer = client_for(alice).get(f"{API}/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert answer.status_code == 200
    return json.loads(answer.content)


def operations(schema):
    return [
        (method, path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]


def error_body(answer) -> str:
    return answer["content"]["application/json"]["schema"]["$ref"].split("/")[-1]


@pytest.mark.parametrize(("method", "path"), ASKS_IF_MATCH)
def test_the_schema_declares_if_match_and_the_412_of_a_version_refused(schema, method, path):
    operation = schema["paths"][path][method]

    assert error_body(operation["responses"]["412"]) == "Error"
    (if_match,) = [p for p in operation["parameters"] if p["name"] == "If-Match"]
    assert (if_match["in"], if_match["required"], if_match["schema"]) == (
        "header", False, {"type": "string"},
    )  # fmt: skip


@pytest.mark.parametrize(("method", "path"), SENDS_ETAG)
def test_the_schema_declares_the_etag_the_import_is_answered_with(schema, method, path):
    assert "ETag" in schema["paths"][path][method]["responses"]["200"]["headers"]


def test_no_other_operation_asks_if_match(schema):
    asking = {
        (method, path)
        for method, path, operation in operations(schema)
        if any(p["name"] == "If-Match" for p in operation.get("parameters", []))
    }
    assert asking == set(ASKS_IF_MATCH)


@pytest.mark.parametrize(("method", "path"), THROTTLED)
def test_the_schema_declares_the_429_of_a_throttled_operation(schema, method, path):
    throttled = schema["paths"][path][method]["responses"]["429"]

    assert error_body(throttled) == "Error"
    assert "Retry-After" in throttled["headers"]


def test_only_throttled_operations_declare_a_429(schema):
    declared = {(m, p) for m, p, op in operations(schema) if "429" in op["responses"]}
    assert declared == set(THROTTLED)


def test_every_operation_declares_the_503_of_a_database_away_and_a_change_the_413(schema):
    for method, path, operation in operations(schema):
        answers = operation["responses"]
        # (`/health`'s 503 is its report, declared by its view: the database down is in it.)
        said = "Health" if path == "/api/v1/health/" else "Error"
        assert error_body(answers["503"]) == said, (method, path)
        if method in ("post", "put", "patch", "delete"):
            assert error_body(answers["413"]) == "Error", (method, path)


def test_what_the_schema_declares_is_what_an_if_match_refused_is_answered(alice, schema):
    # Given an import and its version, then a change made by another client
    imp = make_import(alice, SOURCE)
    client = client_for(alice)
    version = client.get(f"{API}/imports/{imp.pk}/")["ETag"]
    client.post(f"{API}/imports/{imp.pk}/pause/")

    # When a change is sent with the older version
    refused = client.post(f"{API}/imports/{imp.pk}/resume/", HTTP_IF_MATCH=version)

    # Then it is the 412 the schema declares, with an Error's body
    declared = schema["paths"][IMPORT + "resume/"]["post"]["responses"]
    assert str(refused.status_code) in declared
    assert set(refused.json()) <= set(schema["components"]["schemas"]["Error"]["properties"])
