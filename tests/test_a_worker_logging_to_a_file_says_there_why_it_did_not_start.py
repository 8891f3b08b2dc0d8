"""A worker whose log goes to a file (`--logfile`, as a service manager's unit or an operator
shipping it from there runs it) says in that file, once, why it did not start; its stderr says
it once too, as it did.

Regression (reviewC hunt): the refusal was printed to stderr alone, the checks' own lines held
back at DEBUG: a worker run with --logfile left its log file without a word of why it exited 1,
where a CRITICAL line said it before. A real worker from the Procfile's line, its database out
of reach.
"""

from __future__ import annotations

import subprocess

import pytest

from project.devservices import BASE_DIR, free_port
from tests.conftest import procfile_command

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_the_refusal_is_in_the_workers_log_file_and_on_its_stderr_once_each(processes, tmp_path):
    # Given a worker whose log goes to a file, and a DATABASE_URL where no server listens
    port = free_port()
    log_file = tmp_path / "worker.log"
    command = f"exec {procfile_command('worker')} --logfile={log_file}"
    env = processes.env(DATABASE_URL=f"postgres://postgres:pw@127.0.0.1:{port}/x")

    # When it starts
    worker = subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )

    # Then it exits 1, and its log file says why once, in words, as its stderr does
    words = f"importbeat worker not started: cannot reach the database x at 127.0.0.1:{port}"
    logged = [line for line in log_file.read_text().splitlines() if words in line]
    printed = [line for line in worker.stderr.splitlines() if words in line]
    assert worker.returncode == 1, worker.stderr
    assert len(logged) == 1 and "CRITICAL" in logged[0], log_file.read_text()
    assert len(printed) == 1 and printed[0].startswith(words), worker.stderr
