"""docker-compose.yml's worker healthcheck pings the node the worker's command names,
`${WORKER_NAME:-worker}@<container>`: it pinged `worker@<container>` whatever WORKER_NAME said,
and compose passes WORKER_NAME through to every process, so with it set every healthy worker
was `unhealthy` ("No nodes replied within time constraint", exit 69) (deploy hunt).

The healthcheck is run as compose runs it (`docker-compose config`'s, under the container's
shell), against a worker started from its Procfile line, HOSTNAME its host name as in a
container.
"""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
import yaml

from tests.conftest import wait_for
from tests.test_docker_compose_file import REQUIRED, compose_config

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def _healthcheck(**env: str) -> list[str]:
    result = compose_config(**REQUIRED, **env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]["worker"]["healthcheck"]["test"]


@pytest.mark.parametrize("worker_name", ["", "ingest"])
def test_the_worker_healthcheck_passes_whatever_worker_name_says(processes, worker_name):
    # Given a worker started from its Procfile line, WORKER_NAME set where compose runs or not
    extra = {"WORKER_NAME": worker_name} if worker_name else {}
    processes.start("worker", **extra)
    wait_for(lambda: "ready." in processes.log_of("worker"), 90, what="worker\n" + processes.logs())

    # When compose's healthcheck asks it, in the container's shell (`docker-compose config`
    # prints the file's `$$` escape as it is; the shell gets `$`)
    kind, command = _healthcheck(**extra)
    assert kind == "CMD-SHELL"
    result = subprocess.run(
        ["/bin/sh", "-c", command.replace("$$", "$")],
        env=processes.env(**extra, HOSTNAME=socket.gethostname()),
        capture_output=True, text=True, timeout=60, cwd=os.getcwd(),
    )  # fmt: skip

    # Then the healthy worker is said healthy
    assert result.returncode == 0, (command, result.stdout[-800:], result.stderr[-800:])
