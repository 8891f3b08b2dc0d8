"""Guards for the plumbing: the Procfile lines start, and docker-compose runs the same ones."""

import urllib.request
from pathlib import Path

import pytest
import yaml

from project.devservices import free_port
from tests.conftest import procfile_command, wait_for

BASE_DIR = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["web", "worker", "beat", "flower"])
def test_docker_compose_runs_the_procfile_line(name):
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())

    command = compose["services"][name]["command"]

    # Compose reads `$$` as a literal `$`, which the container's shell then expands.
    assert command.replace("$$", "$") == f"sh -c 'exec {procfile_command(name)}'"


def test_docker_compose_lets_the_worker_scale():
    worker = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())["services"]["worker"]

    # `--scale worker=4` needs a service without a fixed container name or host port.
    assert "container_name" not in worker and "ports" not in worker


@pytest.mark.django_db(transaction=True)
@pytest.mark.processes
def test_the_web_line_serves_the_admin(processes):
    port = free_port()
    processes.start("web", PORT=str(port))

    def login_page():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    wait_for(login_page, 30, what="gunicorn to answer\n" + processes.logs())
