"""A second terminal while `make run` is up: `manage.py` with no variable set at all reads the
running stack's settings from .run/services.env (servers, DEBUG, private hosts), and `psql`
takes the database URL written there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from project.devservices import psql_url, stack_env
from schedules.models import ImportRun
from tests.conftest import BASE_DIR
from tests.conftest import test_database_url as database_url
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

# What scripts/run.sh does under `devservices run --write-env`, then a bare second terminal.
STACK = """
set -e
python -m project.devservices env >> "$IMPORTBEAT_SERVICES_ENV"
env -i PATH="$PATH" HOME="$HOME" IMPORTBEAT_SERVICES_ENV="$IMPORTBEAT_SERVICES_ENV" \
    python manage.py run_import --no-progress "$IMPORT_ID"
env -i PATH="$PATH" IMPORTBEAT_SERVICES_ENV="$IMPORTBEAT_SERVICES_ENV" python manage.py help
env -i PATH="$PATH" HOME="$HOME" IMPORTBEAT_SERVICES_ENV="$IMPORTBEAT_SERVICES_ENV" \
    make -s manage ARGS=check > "$IMPORTBEAT_SERVICES_ENV.make"
cp "$IMPORTBEAT_SERVICES_ENV" "$IMPORTBEAT_SERVICES_ENV.seen"
"""


def test_manage_py_in_a_second_terminal_runs_with_the_stacks_settings(alice, csv_server, tmp_path):
    # Given a stack started like `make run` (debug, the demo's private hosts allowed)
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    services_env = tmp_path / "services.env"
    env = {
        "PATH": f"{BASE_DIR / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "DATABASE_URL": database_url(),
        "REDIS_URL": os.environ["REDIS_URL"],
        "DJANGO_DEBUG": "1",
        "ALLOWED_PRIVATE_HOSTS": "127.0.0.1:*",
        "IMPORTBEAT_SERVICES_ENV": str(services_env),
        "IMPORT_ID": str(imp.pk),
    }

    # When a second terminal, with none of those variables, runs commands of the README
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "project.devservices",
            "run",
            "--write-env",
            "--",
            "sh",
            "-c",
            STACK,
        ],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # Then they work, and the import fetched from a private address succeeded as on the stack
    assert result.returncode == 0, result.stdout + result.stderr
    assert ImportRun.objects.get(scheduled_import=imp).status == "succeeded"
    assert "Available subcommands" in result.stdout
    # ... `make manage` too, with the stack's file where IMPORTBEAT_SERVICES_ENV says (it looked
    # in .run/ only, and said "start `make run` first")
    assert "System check identified no issues" in (tmp_path / "services.env.make").read_text()
    written = (tmp_path / "services.env.seen").read_text()
    assert "DJANGO_DEBUG=1\n" in written and "ALLOWED_PRIVATE_HOSTS=127.0.0.1:*\n" in written
    # And the file goes away with the stack
    assert not services_env.exists()


def test_psql_takes_the_database_url_written_for_it():
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("no psql on PATH")

    result = subprocess.run(
        [psql, psql_url(database_url()), "-Atc", "select 40 + 2"],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"


def test_only_settings_are_written_not_the_whole_environment():
    written = stack_env({"DJANGO_DEBUG": "1", "HOME": "/root", "SSH_AUTH_SOCK": "/tmp/x"})

    assert written == "DJANGO_DEBUG=1\n"
