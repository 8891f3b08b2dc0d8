"""A PostgreSQL (or a Redis) that answers and takes no more connections: at its
max_connections, its role's CONNECTION LIMIT, Redis's maxclients. It is there, and busy: what
importbeat says must name that, not an outage, and nothing may be lost meanwhile.

Regression (clients hunt): a role that is no superuser, an application's usual role, meets
"remaining connection slots are reserved for …" at a full server, and a worker started then
said "cannot reach the database …: the reason is in the log" (a full Redis's "max number of
clients reached" too); the API answered "the database cannot be reached now", and a worker
handed its runs back as "importbeat's database is unreachable" (each with Celery's traceback of
the hand-back, every 2 s of each pool process), so an operator looked for an outage where
max_connections wanted raising. The admin's Test source said "the check stopped on
an unexpected error on the worker".
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
import redis
import requests
from knox.models import AuthToken

from common import error_words
from project.devservices import free_port
from schedules import services, source_check
from schedules.models import ImportRun
from tests.conftest import answers, wait_for
from tests.connection_limit_support import (
    LimitedRole,
    a_limited_role,
    app_url,
    fill,
    small_server,
    start_worker_as,
)
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, RedisServer
from tests.test_worker_not_started_without_its_database_or_broker import refusal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


@pytest.fixture
def limited_role() -> Iterator[LimitedRole]:
    yield from a_limited_role()


SERVER_FULL = "the server has no free connection: it is at its max_connections"
ROLE_FULL = "the database user has no free connection: it is at its CONNECTION LIMIT"
NO_FREE_CONNECTION = (
    "the database has no free connection now (it is at its connection limit), so nothing was "
    "read or changed; try again in a moment"
)


@pytest.mark.parametrize(
    ("refusal_text", "words"),
    [
        ("connection failed: connection to server at \"10.0.0.5\", port 5432 failed: FATAL:  "
         "remaining connection slots are reserved for non-replication superuser connections",
         SERVER_FULL),
        ("FATAL:  remaining connection slots are reserved for roles with the SUPERUSER "
         "attribute", SERVER_FULL),
        ("FATAL:  remaining connection slots are reserved for roles with privileges of the "
         "\"pg_use_reserved_connections\" role", SERVER_FULL),
        ("FATAL:  sorry, too many clients already", SERVER_FULL),
        ("FATAL:  too many connections for role \"importbeat\"", ROLE_FULL),
        ("FATAL:  too many connections for database \"importbeat\"",
         "the database has no free connection: it is at its CONNECTION LIMIT"),
    ],
    ids=["reserved-14", "reserved-16", "reserved-to-a-role", "all-slots", "role", "database"],
)  # fmt: skip
def test_each_refusal_for_want_of_a_connection_is_said_in_its_words(refusal_text, words):
    assert error_words.reason(psycopg.OperationalError(refusal_text)) == words


@pytest.mark.parametrize("every_slot_taken", [False, True], ids=["reserved-slots", "all-slots"])
def test_a_worker_started_on_a_server_at_its_max_connections_says_so(processes, every_slot_taken):
    held: list[psycopg.Connection] = []
    with small_server() as server:
        try:
            # Given a server whose slots for the application's role are taken (or every one)
            fill(app_url(server), held)
            if every_slot_taken:
                fill(server.url, held)

            # When a worker starts
            worker = processes.start("worker", DATABASE_URL=app_url(server))

            # Then it exits saying the server has no free connection
            said = refusal(processes, worker)
        finally:
            for session in held:
                session.close()
    assert said == (
        f"importbeat worker not started: cannot reach the database importbeat at "
        f"127.0.0.1:{server.port}: {SERVER_FULL}"
    )


def test_a_worker_started_on_a_broker_at_its_maxclients_says_so(processes, tmp_path):
    broker = RedisServer(free_port(), tmp_path)
    broker.start()
    try:
        # Given a broker whose every connection is taken
        taken = redis.Redis.from_url(broker.url)
        taken.config_set("maxclients", 1)

        # When a worker starts
        worker = processes.start("worker", CELERY_BROKER_URL=broker.url)

        # Then it exits saying the broker has no free connection
        said = refusal(processes, worker)
        taken.close()
    finally:
        broker.kill()
    assert said == (
        f"importbeat worker not started: cannot reach the broker at 127.0.0.1:{broker.port}: "
        "the server has no free connection: it is at its maxclients"
    )


def test_the_api_says_the_database_has_no_free_connection(alice, processes, limited_role):
    imp = make_import(alice, "http://127.0.0.1:9/p.csv")
    _, token = AuthToken.objects.create(user=alice, expiry=None)
    headers = {"Authorization": f"Token {token}"}
    port = free_port()
    # Connections not kept (DATABASE_CONN_MAX_AGE=0): each request asks for a new one, as a
    # thread's first request, or one after a pause, does.
    processes.start(
        "web", PORT=str(port), WEB_CONCURRENCY="1", DATABASE_URL=limited_role.url,
        DATABASE_CONN_MAX_AGE="0",
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/api/v1"
    wait_for(lambda: answers(f"{base}/health"), 30, what="web\n" + processes.logs())
    assert requests.get(f"{base}/imports/", headers=headers, timeout=30).status_code == 200

    # Given the web's database user at its connection limit
    limited_role.limit(0)

    # When alice lists her imports and runs one
    listed = requests.get(f"{base}/imports/", headers=headers, timeout=30)
    triggered = requests.post(f"{base}/imports/{imp.pk}/run", headers=headers, timeout=30)

    # Then each is a 503 saying the database has no free connection, and when to come back
    for answer in (listed, triggered):
        assert answer.status_code == 503, answer.text
        assert answer.json() == {"detail": NO_FREE_CONNECTION}
        assert answer.headers["Retry-After"] == "5"
    # And the web's log says which limit the server met
    assert 'too many connections for role "' in processes.log_of("web")
    assert not ImportRun.objects.filter(scheduled_import=imp).exists()


def test_a_run_taken_while_the_database_has_no_free_connection_waits_and_runs_once_one_frees(
    alice, csv_server, processes, limited_role
):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    start_worker_as(processes, limited_role, **FAST)

    # Given the worker's database user at its connection limit
    limited_role.limit(0)

    # When a run is queued
    run = services.enqueue_run(imp, trigger="manual", user=alice)

    # Then its message goes back to the queue, saying the database has no free connection, and
    # the run waits, queued
    wait_for(
        lambda: "importbeat's database has no free connection" in processes.log_of("worker"),
        60, what="a hand-back\n" + processes.logs(),
    )  # fmt: skip
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("queued", 0)
    # in a line each time, not with the sixty lines of the hand-back's traceback
    assert "Traceback" not in processes.log_of("worker")

    # And once a connection frees, it runs, once
    limited_role.limit(-1)
    wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, status="succeeded").exists(), 60,
        what="the run to succeed\n" + processes.logs(),
    )  # fmt: skip
    run.refresh_from_db()
    assert (run.attempts, run.rows_inserted) == (1, 3)
    assert ImportRun.objects.filter(scheduled_import=imp).count() == 1


def test_test_source_says_the_workers_database_has_no_free_connection(
    alice, csv_server, processes, limited_role
):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    start_worker_as(processes, limited_role, **FAST)

    # Given the worker's database user at its connection limit
    limited_role.limit(0)

    # When alice tests her import's source (the admin's Test source)
    found = source_check.check_source(imp, by=alice.pk)

    # Then the check says the worker has no database connection, not an unexpected error
    assert found.problems == [
        f"the worker cannot reach importbeat's database: {ROLE_FULL}; try again in a moment"
    ]
