"""Downloads that take long, or a client that stops reading, leave the API answering.

The Procfile's gunicorn ran two sync workers: a process per request, each held for as long as
its response took. Two users exporting their datasets (minutes for millions of records), or two
clients that opened an export and stopped reading, held both, and every other request waited:
the API, the dashboard and /health (the load balancer's check) answered no one until the
exports ended, or until the arbiter killed a stuck worker after --timeout. Now each worker
serves WEB_THREADS requests at once (gunicorn's gthread workers); a client that takes nothing
of a response for three quarters of --timeout is cut off, its thread freed; and a statement
that outlasts --timeout is ended by PostgreSQL, where the arbiter used to kill the process.
"""

from __future__ import annotations

import socket
import time

import psycopg
import pytest
import requests
from django.conf import settings
from django.test import Client
from knox.models import AuthToken

from common import web_statements
from project.devservices import free_port
from schedules.models import Dataset
from tests.conftest import answers, wait_for
from tests.test_a_long_export_is_streamed_whole import make_records

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

# The web's timeout here: its cut-off of a stalled client comes at three quarters of it, before
# the arbiter's kill; at 4 s, four runners on two cores let the kill come first (2 s of margin).
TIMEOUT_SECONDS = 8
STATEMENT_SECONDS = web_statements.statement_limit(TIMEOUT_SECONDS)


def start_web(processes, **extra: str) -> str:
    port = free_port()
    processes.start(
        "web",
        PORT=str(port),
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        GUNICORN_CMD_ARGS=f"--timeout {TIMEOUT_SECONDS}",
        **extra,
    )
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{base}/admin/login/"), 30, what="web\n" + processes.logs())
    return base


def open_export_and_stop_reading(base: str, token: str) -> socket.socket:
    """A client that asks for an export, takes its first bytes, and then reads no more."""
    host, port = base.removeprefix("http://").split(":")
    client = socket.create_connection((host, int(port)))
    client.sendall(
        f"GET /api/v1/datasets/wide/export HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Token {token}\r\n\r\n".encode()
    )
    assert client.recv(64).startswith(b"HTTP/1.1 200")
    return client


def test_two_clients_that_stop_reading_an_export_leave_the_api_answering(alice, processes):
    # Given an export of megabytes, more than the sockets' buffers hold, and the Procfile's web
    make_records(Dataset.objects.create(owner=alice, name="wide"), 20_000)
    base = start_web(processes)
    _, token = AuthToken.objects.create(user=alice)

    # When two clients open it, as many as the web has processes, and stop reading
    stalled = [open_export_and_stop_reading(base, token) for _ in range(2)]
    try:
        # Then the API answers meanwhile, at once
        took = time_me(base, token)
        print(f"GET /me answered in {took:.2f} s beside two stalled exports")
        assert took < TIMEOUT_SECONDS / 2
    finally:
        for client in stalled:
            client.close()


def test_a_client_that_stops_reading_is_cut_off_and_its_thread_freed(alice, processes):
    # Given a web of one process with one thread
    make_records(Dataset.objects.create(owner=alice, name="wide"), 20_000)
    base = start_web(processes, WEB_CONCURRENCY="1", WEB_THREADS="1")
    _, token = AuthToken.objects.create(user=alice)

    # When a client opens an export and stops reading
    stalled = open_export_and_stop_reading(base, token)
    try:
        # Then it is cut off, and the thread it held answers the next request (how soon is
        # printed, not asserted: a loaded machine once took longer than twice the timeout)
        took = time_me(base, token)
        print(f"GET /me answered in {took:.2f} s behind a stalled export")
        # (its log line may reach the file a moment after the next answer)
        said = wait_for(
            lambda: "cut off the export of dataset" in (text := processes.logs()) and text,
            30,
            what="the export cut off",
        )
        assert f"the client took nothing of it for {TIMEOUT_SECONDS * 0.75:.0f} s" in said
        # not by the arbiter killing the process (what a sync worker's stalled write came to)
        assert "WORKER TIMEOUT" not in said
    finally:
        stalled.close()


def test_a_request_stuck_on_a_lock_ends_at_the_timeout_and_frees_its_thread(
    alice, django_user_model, processes
):
    # Given a web of one process with one thread
    base = start_web(processes, WEB_CONCURRENCY="1", WEB_THREADS="1")
    _, token = AuthToken.objects.create(user=alice)
    time_me(base, token)  # the thread's connection made

    # When a request waits for a lock that another session holds
    with connect() as other:
        other.execute("LOCK TABLE knox_authtoken IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        answer = requests.get(
            f"{base}/api/v1/me", headers={"Authorization": f"Token {token}"}, timeout=30
        )
        took = time.monotonic() - started
        other.rollback()

    # Then PostgreSQL ends it at the web's timeout, and the API says so
    print(f"a request stuck on a lock answered in {took:.2f} s")
    assert answer.status_code == 503
    assert answer.json() == {
        "detail": f"the database did not answer within {STATEMENT_SECONDS:g} s (the web's "
        f"timeout is {TIMEOUT_SECONDS} s); try again in a moment"
    }
    assert STATEMENT_SECONDS - 0.5 < took < TIMEOUT_SECONDS * 2
    # and its thread answers the next request at once, the process alive
    assert time_me(base, token) < TIMEOUT_SECONDS / 2
    assert "WORKER TIMEOUT" not in processes.logs()

    # and a page (the dashboard, staff's) says it in the same words
    staff = django_user_model.objects.create_user("ops", "ops@example.com", "pw", is_staff=True)
    signed_in = Client()
    signed_in.force_login(staff)
    session = {"sessionid": signed_in.cookies["sessionid"].value}
    with connect() as other:
        other.execute("LOCK TABLE schedules_scheduledimport IN ACCESS EXCLUSIVE MODE")
        page = requests.get(f"{base}/dashboard/", cookies=session, timeout=30)
        other.rollback()
    assert page.status_code == 503
    assert page.text == (
        f"The database did not answer within {STATEMENT_SECONDS:g} s (the web's timeout is "
        f"{TIMEOUT_SECONDS} s); try again in a moment.\n"
    )
    # ended by PostgreSQL before the arbiter's timeout, the page's other statements included
    # (a statement ended exactly at the timeout raced the arbiter's kill: a 500, no words)
    assert "WORKER TIMEOUT" not in processes.logs()


def connect() -> psycopg.Connection:
    """A session of its own on the test database, as another client's would be."""
    params = settings.DATABASES["default"]
    return psycopg.connect(
        dbname=params["NAME"], user=params["USER"], host=params["HOST"],
        port=params["PORT"] or None,
    )  # fmt: skip


def time_me(base: str, token: str) -> float:
    """Seconds until GET /me answers 200."""
    started = time.monotonic()
    answer = requests.get(
        f"{base}/api/v1/me", headers={"Authorization": f"Token {token}"}, timeout=30
    )
    assert answer.status_code == 200
    return time.monotonic() - started
