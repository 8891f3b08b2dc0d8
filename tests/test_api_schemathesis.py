"""The OpenAPI schema is served, and no request generated from it gets a 5xx.

Schemathesis (property-based, on Hypothesis) builds requests for every operation from
`/api/v1/schema/` and sends them to the WSGI application with alice's token; half of the
generated ids and names are swapped for alice's real ones so that the object paths run too.
Bounded by MAX_EXAMPLES per operation to keep the run short.
"""

import re
from collections import Counter

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from knox.models import AuthToken
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from schedules.models import ScheduledImport
from tests.api_support import API, SOURCE, client_for, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db

# 15, not 20: 75 s of CI's 15 minutes under load; the five more per operation found nothing
# the fifteen had not in the last rounds.
MAX_EXAMPLES = 15
CONFORMANCE = [status_code_conformance, response_schema_conformance]


@pytest.fixture
def wsgi_app():
    """The WSGI app on the test's own connection: as Django's test client does, keep it from
    closing the connection (and the test's transaction) at the end of each request."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_the_schema_is_openapi_3_and_the_docs_are_served_without_a_cdn(alice):
    client = client_for(alice)

    schema = client.get(f"{API}/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    docs = client.get(f"{API}/docs/")

    assert schema.status_code == 200
    assert schema.json()["openapi"].startswith("3.")
    paths = schema.json()["paths"]
    for path in ["/api/v1/imports/{id}/run/", "/api/v1/imports/{id}/stats/", "/api/v1/health/",
                 "/api/v1/datasets/{name}/records/", "/api/v1/auth/token/",
                 "/api/v1/runs/{id}/cancel/", "/api/v1/runs/{id}/retry/",
                 "/api/v1/imports/{id}/history/", "/api/v1/imports/{id}/deliveries/",
                 "/api/v1/datasets/{name}/export/", "/api/v1/me/"]:  # fmt: skip
        assert path in paths
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html
    # Every script, stylesheet and icon comes from this server (no CDN): a path, not a URL.
    # (Not a search for "cdn" in the page: its random CSRF token can hold those letters.)
    assets = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets


def test_no_generated_request_gets_a_server_error(alice, wsgi_app):
    # Given alice (a fresh token per call: the logout operations revoke them) and one import
    # with a run and a dataset to aim at

    def real_import() -> ScheduledImport:
        imp = ScheduledImport.objects.filter(owner=alice).first()
        if imp is None:
            imp = make_import(alice, SOURCE, dataset="products")
            make_run(imp, "failed", error_details={"rows": [{"line": 2, "reason": "x"}]})
        return imp

    schema = schemathesis.openapi.from_wsgi(f"{API}/schema/?format=json", wsgi_app)
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    # When every operation is called with generated data
    for operation in operations:

        @given(case=operation.as_strategy(), aim=st.booleans())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def call(case, aim: bool) -> None:
            imp = real_import()
            if aim and case.path_parameters:
                if "id" in case.path_parameters:
                    case.path_parameters["id"] = imp.pk
                if "name" in case.path_parameters:
                    case.path_parameters["name"] = imp.dataset.name
            _, token = AuthToken.objects.create(user=alice, expiry=None)
            response = case.call(headers={"Authorization": f"Token {token}"})
            statuses[response.status_code] += 1
            said = f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}"
            if response.status_code >= 500:
                failures.append(f"{said} -> {response.status_code}")
                return
            try:
                # Its status declared, its body as the schema says (errors included)
                case.validate_response(response, checks=CONFORMANCE)
            except FailureGroup as wrong:
                failures.append(f"{said} -> {response.status_code}: {str(wrong)[:400]}")

        call()

    # Then none of them got a 5xx, and every answer is one the schema declares
    assert not failures, "\n".join(failures)
    # (and the run reached past validation and into real objects, not only 400s and 404s)
    assert statuses[200] > 20 and statuses[400] and statuses[404], statuses


def test_the_schema_says_null_where_answers_hold_null(alice):
    # A scheduled run's triggered_by, a progress whose size is unknown and a record written
    # outside a run are null; the schema said string, number and integer, and a typed client
    # generated from it failed on every run list. A retry's 409 may carry `detail` alone.
    schemas = (
        client_for(alice)
        .get(f"{API}/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
        .json()["components"]["schemas"]
    )

    for name, field in [("Run", "triggered_by"), ("Run", "progress"), ("RunDetail", "progress"),
                        ("ActiveRun", "progress"), ("Record", "first_seen_run"),
                        ("Record", "last_changed_run")]:  # fmt: skip
        assert schemas[name]["properties"][field].get("nullable") is True, (name, field)
    assert schemas["ActiveRunConflict"]["required"] == ["detail"]


def test_no_operation_is_described_by_an_internal_docstring(alice):
    # Eight operations' Swagger description was a mixin's: "get_object() whose 404 names ..."
    paths = (
        client_for(alice)
        .get(f"{API}/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
        .json()["paths"]
    )

    described = [op.get("description", "") for ops in paths.values() for op in ops.values()]
    assert not [text for text in described if "get_object()" in text]


def test_every_operation_declares_the_errors_it_answers(alice):
    # A client generated from the schema knew each operation's success alone, and raised on
    # a 400, 401 or 404 instead of reading its `detail` and `errors`
    schema = client_for(alice).get(f"{API}/schema/", {"format": "json"}).json()

    for path, item in schema["paths"].items():
        for method, operation in item.items():
            answers = operation["responses"]
            public = {} in (operation.get("security") or [{}])
            expected = (
                {"400"} | (set() if public else {"401"}) | ({"404"} if "{" in path else set())
            )
            assert expected <= answers.keys(), (method, path, sorted(answers))
            for code in expected:
                body = answers[code]["content"]["application/json"]["schema"]
                assert body["$ref"].split("/")[-1] in ("Error", "Refused"), (method, path, code)
    assert schema["components"]["schemas"]["Refused"]["required"] == ["detail", "errors"]
    dry_run = schema["paths"]["/api/v1/imports/"]["post"]["responses"]["200"]
    assert dry_run["content"]["application/json"]["schema"]["$ref"].endswith("/SourceCheck")
