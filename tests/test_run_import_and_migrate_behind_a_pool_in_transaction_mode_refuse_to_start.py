"""`manage.py run_import` and `migrate` whose DATABASE_URL is a PgBouncer in transaction mode
refuse to start, in words (project/database_pooler.py), as a worker and beat do.

run_import ran its import and failed it half way as "an unexpected error in importbeat"
("relation importbeat_raw does not exist"), leaving its staging tables on whichever server
session it last had, so that the next run through the pool failed on "relation importbeat_raw
already exists"; migrate set its lock_timeout on one server session (for whichever client came
next) and ran its migrations on others, unbounded. A real PgBouncer whose clients are given
its sessions in turn (as a busy pool's are), real commands."""

from __future__ import annotations

import subprocess
import sys

import pytest

from schedules import services
from schedules.models import ImportRun
from tests.conftest import BASE_DIR, Processes
from tests.factories import make_import
from tests.pgbouncer_support import pgbouncer
from tests.reliability import big_csv

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("command", ["run_import", "migrate"])
def test_a_command_behind_a_pool_in_transaction_mode_refuses_to_start_in_words(
    alice, csv_server, tmp_path, command
):
    # Given alice's import, and a PgBouncer in transaction mode in front of the database
    url = csv_server.serve("/big.csv", big_csv(5000))
    imp = services.pause_import(make_import(alice, url))
    with pgbouncer("transaction", server_round_robin=1, min_pool_size=3) as pool:
        # When the command runs through it
        env = Processes(tmp_path).env(DATABASE_URL=pool.url)
        argv = [command, str(imp.pk)] if command == "run_import" else [command]
        done = subprocess.run(
            [sys.executable, "manage.py", *argv], cwd=BASE_DIR, env=env,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    # Then it exits at once saying why and what to do, and ran nothing
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert (
        f"importbeat {command} not started: its DATABASE_URL is a connection pool in transaction "
        "mode (PgBouncer's pool_mode = transaction)"
    ) in said
    assert "Point its DATABASE_URL at a pool in session mode or at PostgreSQL itself" in said
    assert "Traceback" not in said
    assert not ImportRun.objects.filter(scheduled_import=imp).exists()
