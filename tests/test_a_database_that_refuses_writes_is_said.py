"""A database that answers and takes no writes: a standby a failover left DATABASE_URL on, or
a server whose transactions are read-only (`default_transaction_read_only`, which managed
providers turn on when the disk is nearly full). The suite makes the second with `ALTER
DATABASE ... SET default_transaction_read_only = on`, which every new session takes.

Before, `SELECT 1` passed: `/api/v1/health` said all was well, a trigger answered a 500, a
worker started, and each run it took failed before it was claimed, its message acknowledged
and the run left `queued` with nothing behind it (reconciliation sent it again half an hour
later, to meet the same end while the server stayed read-only).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
import requests
from django.contrib.auth import get_user_model
from django.db import connection
from knox.models import AuthToken

from common import read_only_database
from common.error_words import CLASS_NAME, database_place
from project.devservices import free_port
from schedules import services
from schedules.models import ImportRun
from tests.conftest import answers, wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST
from tests.test_worker_not_started_without_its_database_or_broker import refusal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def place() -> str:
    return database_place(connection.settings_dict)


@pytest.fixture
def read_only(transactional_db) -> Iterator[callable]:
    """`read_only(True)` makes the test database's new sessions read-only; undone at the end,
    before the test's tables are emptied."""
    name = connection.settings_dict["NAME"]

    def set_read_only(on: bool) -> None:
        with connection.cursor() as cursor:
            value = "on" if on else "off"
            cursor.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {value}')

    yield set_read_only
    set_read_only(False)


def test_health_says_the_database_takes_no_writes_and_a_trigger_answers_503(
    alice, csv_server, processes, read_only
):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    _, token = AuthToken.objects.create(user=alice, expiry=None)
    ops = get_user_model().objects.create_user("ops", is_staff=True)
    _, ops_token = AuthToken.objects.create(user=ops, expiry=None)
    # Given a web whose database's sessions are read-only
    read_only(True)
    port = free_port()
    processes.start("web", PORT=str(port), WEB_CONCURRENCY="1")
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{base}/admin/login/"), 30, what="web\n" + processes.logs())

    # When staff ask for health
    answer = requests.get(
        f"{base}/api/v1/health", headers={"Authorization": f"Token {ops_token}"}, timeout=30
    )

    # Then it is down, saying the database takes no writes and what to do
    assert answer.status_code == 503, answer.text
    assert answer.json()["checks"]["database"] == {
        "ok": False,
        "error": f"{place()} takes no writes: {read_only_database.READ_ONLY}",
    }

    # And a trigger is refused in words, and no run is left behind
    refused = requests.post(
        f"{base}/api/v1/imports/{imp.pk}/run",
        headers={"Authorization": f"Token {token}"}, timeout=30,
    )  # fmt: skip
    assert refused.status_code == 503, refused.text
    assert refused.json() == {"detail": read_only_database.ANSWER}
    assert refused.headers["Retry-After"] == "60"
    assert not CLASS_NAME.search(refused.text)
    assert not ImportRun.objects.filter(scheduled_import=imp).exists()


def test_a_worker_does_not_start_on_a_database_that_takes_no_writes(processes, read_only):
    read_only(True)

    worker = processes.start("worker")

    assert refusal(processes, worker) == (
        f"importbeat worker not started: {place()} takes no writes: {read_only_database.READ_ONLY}"
    )


def test_a_run_taken_while_the_database_takes_no_writes_waits_on_the_queue_and_runs_after(
    alice, csv_server, processes, read_only
):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    processes.start("worker", **FAST)
    wait_for(lambda: "ready." in processes.logs(), 60, what="worker\n" + processes.logs())
    # Given a worker running when its database turns read-only (its pool's sessions are new)
    read_only(True)
    with connection.cursor() as cursor:
        # the pool's open sessions keep their setting: end them, as a failover would
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )

    # When a run is queued
    run = services.enqueue_run(imp, trigger="manual", user=alice)

    # Then it is handed back, not dropped: it waits, queued
    wait_for(
        lambda: "goes back to the queue" in processes.logs(), 60,
        what="a hand-back\n" + processes.logs(),
    )  # fmt: skip
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("queued", 0)

    # And once the database takes writes again, it runs, once (the worker's read-only session
    # was dropped at the hand-back: one kept would stay read-only)
    read_only(False)
    wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, status="succeeded").exists(),
        60,
        what="the run to succeed\n" + processes.logs(),
    )
    run.refresh_from_db()
    assert (run.attempts, run.rows_inserted) == (1, 3)


def test_the_words_say_a_standby_and_read_only_transactions_apart():
    assert read_only_database.why(True, "on") == read_only_database.STANDBY
    assert read_only_database.why(False, "on") == read_only_database.READ_ONLY
    assert read_only_database.why(False, "off") is None
    refused = psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only …")
    assert read_only_database.refused(RuntimeError("wrapped")) is False
    try:
        raise RuntimeError("Django's wrapper") from refused
    except RuntimeError as wrapped:
        assert read_only_database.refused(wrapped) is True
