"""Deployment settings (issue 11, point 8): `manage.py check --deploy` is clean with the
production environment the README documents, and deeply nested JSON bodies are a 400.

Regression: a body of nested arrays made every endpoint answer an HTML 500, the
unauthenticated token endpoint included (RecursionError in the JSON parser).
"""

import os
import subprocess
import sys

import pytest
from rest_framework.test import APIClient

from tests.api_support import API, client_for, import_body
from tests.conftest import BASE_DIR

# The production environment of README "Security" › "Production settings".
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "k3Q9-not-a-real-secret-but-long-and-varied-enough-ZxW8vB2nM5pL7rT4yU1",
    "DJANGO_ALLOWED_HOSTS": "importbeat.example.com",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
    "DJANGO_SSL_REDIRECT": "1",
    "DJANGO_HSTS_SECONDS": "31536000",
    "DJANGO_HSTS_PRELOAD": "1",
    "TRUSTED_PROXIES": "10.0.0.2",
    "FLOWER_BASIC_AUTH": "ops:s3cret",
}


def check_deploy(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_documented_production_environment():
    result = check_deploy(**PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_names_what_is_missing_without_it():
    result = check_deploy(DJANGO_DEBUG="0", DJANGO_SECRET_KEY=PRODUCTION["DJANGO_SECRET_KEY"])

    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W008" in result.stderr


@pytest.mark.django_db
@pytest.mark.parametrize("depth", [100, 100_000])
def test_a_deeply_nested_body_is_a_400_on_the_token_endpoint(depth):
    body = "[" * depth + "]" * depth

    response = APIClient().post(f"{API}/auth/token", body, content_type="application/json")

    assert response.status_code == 400
    assert "nested deeper than 32 levels" in response.json()["detail"]


@pytest.mark.django_db
def test_a_deeply_nested_field_is_a_400_on_an_authenticated_endpoint(alice):
    nested: object = "x"
    for _ in range(40):
        nested = {"name": nested}

    response = client_for(alice).post(
        f"{API}/imports/", import_body(columns=[nested]), format="json"
    )

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
