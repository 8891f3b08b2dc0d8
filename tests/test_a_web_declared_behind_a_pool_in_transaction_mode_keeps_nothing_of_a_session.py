"""DATABASE_POOL_MODE=transaction (README: Behind PgBouncer): the web may run behind a pool in
transaction mode, keeping nothing of its session from one transaction to the next (psycopg's
prepared statements off, Django's server-side cursors off, as Django's docs ask), and a process
whose work needs a session (worker, beat, `run_import`, `migrate`) refuses to start in words.
There was no such setting: a command reading rows with `.iterator()` outside a transaction
failed behind such a pool (its cursor, declared WITH HOLD on one server session, was looked
for on another: "cursor … does not exist"). A real PgBouncer, a real `manage.py` command."""

from __future__ import annotations

import runpy
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from common import application_name as application_name_module
from common.application_name import application_name
from schedules.models import Dataset
from tests.conftest import BASE_DIR, Processes
from tests.factories import PRODUCTS_CSV, make_import
from tests.pgbouncer_support import pgbouncer

SETTINGS = str(BASE_DIR / "project" / "settings.py")


def settings_of(monkeypatch, argv: list[str], mode: str) -> dict:
    """The settings a process started with `argv` reads (runpy puts the settings file's path
    in argv[0], where the process's name is read: given here instead)."""
    monkeypatch.setenv("DATABASE_POOL_MODE", mode)
    monkeypatch.setattr(
        application_name_module, "application_name", lambda _argv=None: application_name(argv)
    )
    return runpy.run_path(SETTINGS)


def test_the_web_declared_behind_a_transaction_pool_prepares_nothing_and_declares_no_cursor(
    monkeypatch,
):
    # Given the web's settings with DATABASE_POOL_MODE=transaction
    read = settings_of(monkeypatch, ["/app/.venv/bin/gunicorn", "project.wsgi"], "transaction")

    # Then its connections prepare no statement and Django declares no server-side cursor
    database = read["DATABASES"]["default"]
    assert database["OPTIONS"]["prepare_threshold"] is None
    assert database["DISABLE_SERVER_SIDE_CURSORS"] is True


@pytest.mark.parametrize("mode", ["", "session"])
def test_without_it_or_in_session_mode_the_connections_are_as_on_postgresql(monkeypatch, mode):
    database = settings_of(monkeypatch, ["celery", "-A", "project", "worker"], mode)["DATABASES"]

    assert "prepare_threshold" not in database["default"]["OPTIONS"]
    assert "DISABLE_SERVER_SIDE_CURSORS" not in database["default"]


@pytest.mark.parametrize(
    ("argv", "process"),
    [
        (["/app/.venv/bin/celery", "-A", "project", "worker"], "worker"),
        (["/app/.venv/bin/celery", "-A", "project", "beat"], "beat"),
        (["manage.py", "run_import", "7"], "run_import"),
        (["manage.py", "migrate"], "migrate"),
    ],
)
def test_a_process_that_needs_a_session_refuses_a_declared_transaction_pool(
    monkeypatch, argv, process
):
    said = (
        f"DATABASE_POOL_MODE=transaction: importbeat {process} needs a database session of its own"
        ".*at a pool in session mode or at PostgreSQL itself"
    )
    with pytest.raises(ImproperlyConfigured, match=said):
        settings_of(monkeypatch, argv, "transaction")


def test_a_pool_mode_it_does_not_know_stops_the_start(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_POOL_MODE='statement': use session"):
        settings_of(monkeypatch, ["manage.py", "check"], "statement")


@pytest.mark.django_db(transaction=True)
def test_a_command_behind_a_transaction_pool_reads_its_rows_without_a_server_side_cursor(
    alice, csv_server, tmp_path
):
    # Given datasets, and a PgBouncer in transaction mode in front of the database whose
    # clients are given its sessions in turn (as a busy pool's are)
    for name in ("a", "b", "c"):
        make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), name=name, dataset=name)
    assert Dataset.objects.count() == 3
    with pgbouncer("transaction", server_round_robin=1, min_pool_size=3) as pool:
        # When an operator counts the datasets' records again through it, declared
        env = Processes(tmp_path).env(DATABASE_URL=pool.url, DATABASE_POOL_MODE="transaction")
        done = subprocess.run(
            [sys.executable, "manage.py", "recount_records"], cwd=BASE_DIR, env=env,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    # Then it read every dataset
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 datasets counted" in done.stdout + done.stderr, done.stdout + done.stderr
