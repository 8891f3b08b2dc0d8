"""`/api/v1/health` answers whatever the Host header says; every other path keeps Django's
host check (project/health_any_host.py).

With README "Production"'s own settings (`DJANGO_ALLOWED_HOSTS=imports.example.com`), the
health asked by address, as docker-compose.yml's `web` healthcheck asks it
(`urlopen('http://127.0.0.1:8000/api/v1/health')`) and as a load balancer probing its targets by
address does, answered Django's HTML "Bad Request (400)" (DisallowedHost): the web container was
unhealthy for ever, and "public, for load balancers" did not hold (README hunt, finding 1).

A real web process, started from the Procfile line with production settings.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests
import yaml

from project.devservices import free_port
from tests.conftest import BASE_DIR, answers, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "a-production-secret-key-long-enough-for-django-0123456789",
    "DJANGO_ALLOWED_HOSTS": "imports.example.com",
    "FLOWER_BASIC_AUTH": "ops:s3cret",
}


def compose_web_healthcheck(port: int) -> list[str]:
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    test = compose["services"]["web"]["healthcheck"]["test"]
    assert test[0] == "CMD", test
    # The container's python and port are this machine's venv and the test's port.
    command = [arg.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for arg in test[1:]]
    if command[0] == "python":
        command[0] = sys.executable
    return command


@pytest.fixture
def production_web(processes):
    port = free_port()
    processes.start("web", PORT=str(port), **PRODUCTION)
    wait_for(lambda: answers(f"http://127.0.0.1:{port}/"), 60, what="the web process")
    return port


def test_the_compose_web_healthcheck_passes_with_the_readmes_production_settings(
    production_web,
):
    # Given a web process with the README's production settings, its database and broker up
    # When docker-compose.yml's healthcheck of `web` runs against it
    check = subprocess.run(
        compose_web_healthcheck(production_web), capture_output=True, text=True, timeout=30
    )

    # Then it passes (health is "ok" or "degraded": no worker nor beat here, still a 200)
    assert check.returncode == 0, check.stderr[-600:]


@pytest.mark.parametrize("path", ["/api/v1/health", "/api/v1/health/"])
def test_a_load_balancer_probing_health_by_address_gets_the_health_answer(production_web, path):
    # When a load balancer probes the target by its address
    answer = requests.get(f"http://127.0.0.1:{production_web}{path}", timeout=10)

    # Then it gets the health answer, in JSON, not Django's HTML 400 for a host not allowed
    assert answer.headers.get("Content-Type", "").startswith("application/json"), (
        answer.status_code,
        answer.text[:200],
    )
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["status"] in {"ok", "degraded"}


def test_nothing_of_the_host_header_comes_back_in_the_health_answer(production_web):
    # When a caller sends a Host header of its own making
    answer = requests.get(
        f"http://127.0.0.1:{production_web}/api/v1/health",
        headers={"Host": "attacker.invalid"},
        timeout=10,
    )

    # Then the health answers, and says nothing it sent
    assert answer.status_code == 200, answer.text[:300]
    said = answer.text + "".join(f"{name}: {value}" for name, value in answer.headers.items())
    assert "attacker" not in said


@pytest.mark.parametrize("path", ["/api/v1/me", "/api/v1/healthz", "/admin/login/", "/metrics"])
def test_every_other_path_keeps_the_host_check(production_web, path):
    # When another path is asked by address, a host not in DJANGO_ALLOWED_HOSTS
    answer = requests.get(f"http://127.0.0.1:{production_web}{path}", timeout=10)

    # Then Django refuses it, as before
    assert answer.status_code == 400, (answer.status_code, answer.text[:200])
