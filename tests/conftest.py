"""Shared fixtures: users alice and bob, a local CSV server, and real importbeat processes.

The suite runs under `python -m project.devservices run --test` (see `make test`), which sets
DATABASE_URL and REDIS_URL to servers and a Redis database of the suite's own.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.db import connection
from redis.connection import AbstractConnection

# SFTP server and encryption key fixtures (issue 14), shared by the source tests.
from tests.http_support import QuietHTTPServer
from tests.paramiko_sftp_support import password_sftp_server  # noqa: F401
from tests.sftp_support import encryption_key, sftp_server  # noqa: F401

BASE_DIR = Path(__file__).resolve().parent.parent
PROCFILE = BASE_DIR / "Procfile"


def pytest_configure(config: pytest.Config) -> None:
    """A run stopped by SIGTERM (`timeout`, a CI job cancelled, devservices passing on its own)
    ends as one stopped by Ctrl-C does: its fixtures' finalizers stop the processes its tests
    started. Python's default for SIGTERM ended pytest at once, and a test's worker and its
    pool processes ran on, on the run's Redis and database (benches hunt)."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupted)


def _interrupted(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt("stopped by SIGTERM")


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.com", "alice-password")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", "bob@example.com", "bob-password")


@pytest.fixture(scope="session", autouse=True)
def _own_redis_database():
    # Under pytest-xdist each runner has a Redis database of its own (project/settings.py),
    # which devservices did not flush: nothing a previous run left behind reaches this one.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import redis
        from django.conf import settings

        redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture(autouse=True)
def _importbeats_app_stays_current():
    """A Celery app a test makes is the current one unless told otherwise (set_as_current), for
    the rest of its runner: `current_app`, AsyncResult and send_task then used that app's gone
    broker and disabled backend, and 54 later tests failed in one CI run. Each test ends with
    importbeat's app current again."""
    yield
    from celery._state import get_current_app

    from project.celery import app

    if get_current_app() is not app:
        app.set_current()


@pytest.fixture
def round_trips(monkeypatch) -> list[bytes]:
    """The commands this process sends to Redis meanwhile, one item per round trip."""
    sent: list[bytes] = []
    send = AbstractConnection.send_packed_command

    def counted(self, command, *args, **kwargs):
        sent.append(command)
        return send(self, command, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return sent


@pytest.fixture
def sent(monkeypatch) -> list[int]:
    """The runs whose messages go to the broker (services.send_runs), by id: none is sent."""
    from schedules import services

    ids: list[int] = []
    monkeypatch.setattr(services, "send_runs", lambda runs, **_: ids.extend(r.pk for r in runs))
    return ids


@pytest.fixture(autouse=True)
def _fast_password_hashing(request, settings):
    # Users are created per test, and Django's default hasher spends ~0.5 s on each. Processes
    # a test starts keep the default hashers, so their users' passwords stay verifiable there.
    if request.node.get_closest_marker("processes") is None:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_process_cache():
    # The default cache lives in this process's memory (the dashboard's chart, the last health
    # answers): what one test left there is not another test's.
    from django.core.cache import caches

    caches["default"].clear()


@pytest.fixture(autouse=True)
def _no_backlog_left_behind(settings):
    # Beat notes ticks it skipped behind a waiting run for ten minutes (/health's `backlog`):
    # what an earlier test's beat noted must not leave this test's cluster degraded. Forgotten
    # before the test, on the suite's Redis: after it, the test may have pointed REDIS_URL
    # elsewhere or patched the clock redis-py reads.
    from common.redis_client import BACKLOG_KEY, LAST_TICK_KEY
    from project.beat_watch import WATCHING_KEY

    # An earlier test's beat, stopped, is no beat gone missing to this test's workers
    # (project.beat_watch).
    store = _redis_at(settings.REDIS_URL)
    store.delete(BACKLOG_KEY, LAST_TICK_KEY, WATCHING_KEY)
    # Nor is a turn an earlier test's hand-on kept for a message nobody took (tasks.turns keeps
    # it two minutes) a mail relay busy in this one.
    for key in store.scan_iter("importbeat:turns:*"):
        store.delete(key)
    # Nor are an earlier test's wrong passwords at /metrics this test's (schedules.metrics_guesses).
    for key in store.scan_iter("importbeat:metrics-guesses:*"):
        store.delete(key)


@functools.cache
def _redis_at(url: str):
    import redis

    return redis.Redis.from_url(url)


@pytest.fixture(autouse=True)
def _health_asks_the_workers_each_time(settings):
    # Tests watch health change as they start and stop workers; the reuse of a recent answer
    # has its own test (test_health_reuses_its_last_answer_of_the_workers.py).
    settings.HEALTH_WORKERS_MAX_AGE = 0


@pytest.fixture(autouse=True)
def _allow_local_sources(settings):
    # The suite's CSV servers listen on loopback, which importbeat refuses by default.
    settings.ALLOWED_PRIVATE_HOSTS = ["127.0.0.1:*"]  # every port: the servers take any free one
    settings.MIN_INTERVAL_SECONDS = 1


@pytest.fixture
def drop(tmp_path, settings) -> Iterator[Path]:
    """alice's folder in a drop folder listed in IMPORT_DROP_DIRS (each user reads their own:
    `<drop folder>/<username>/`), and `tmp_path / "outside"`, one not listed."""
    folder = tmp_path / "drop" / "alice"
    folder.mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    settings.IMPORT_DROP_DIRS = [str(folder.parent)]
    yield folder
    # The retention's figures of these folders stay in Redis for `/health`: not another test's.
    from common.redis_client import PROCESSED_RETENTION_KEY, client

    client().delete(PROCESSED_RETENTION_KEY)


# --- a local HTTP server for source files -------------------------------------------------------


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    # The status line's reason phrase (None: the standard one).
    reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    chunk_delay: float = 0.0
    # Validators for conditional requests: a request naming them gets 304 Not Modified.
    etag: str = ""
    last_modified: str = ""
    # Cut the connection after this many bytes of the body (a download that breaks off).
    cut_after: int | None = None
    # Called with the number of bytes sent so far after every chunk of the body.
    after_chunk: Callable[[int], None] | None = None

    def not_modified(self, request_headers) -> bool:
        if self.etag and request_headers.get("If-None-Match"):
            return request_headers["If-None-Match"] == self.etag
        since = request_headers.get("If-Modified-Since")
        return bool(self.last_modified and since == self.last_modified)


class CsvServer:
    """Serves routes set by the test; counts requests per path and keeps their headers."""

    def __init__(self) -> None:
        self.routes: dict[str, Route | Callable[[], Route]] = {}
        self.hits: dict[str, int] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        routes, hits, requests = self.routes, self.hits, self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                hits[path] = hits.get(path, 0) + 1
                # Kept first, so that a route computed per request can read its headers.
                requests.append((path, dict(self.headers)))
                route = routes.get(path)
                if callable(route):
                    route = route()
                if route is None:
                    route = Route(b"not found", 404)
                if route.not_modified(self.headers):
                    self.send_response(304)
                    if route.etag:
                        self.send_header("ETag", route.etag)
                    self.end_headers()
                    return
                self.send_response(route.status, route.reason)
                validators = {"ETag": route.etag, "Last-Modified": route.last_modified}
                headers = {
                    "Content-Type": "text/csv",
                    **{name: value for name, value in validators.items() if value},
                    **route.headers,
                }
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                step = 64 * 1024
                body = route.body[: route.cut_after]
                for start in range(0, len(body), step):
                    chunk = body[start : start + step]
                    try:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    if route.after_chunk:
                        route.after_chunk(start + len(chunk))
                    if route.chunk_delay:
                        time.sleep(route.chunk_delay)
                if route.cut_after is not None:
                    self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, path: str, body: bytes | str, **kwargs) -> str:
        if isinstance(body, str):
            body = body.encode()
        self.routes[path] = Route(body, **kwargs)
        return self.base_url + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def csv_server() -> Iterator[CsvServer]:
    server = CsvServer()
    yield server
    server.close()


# --- real processes from the Procfile -----------------------------------------------------------


def procfile_command(name: str) -> str:
    for line in PROCFILE.read_text().splitlines():
        process, sep, command = line.partition(":")
        if sep and process.strip() == name:
            return command.strip()
    raise KeyError(f"no {name!r} line in the Procfile")


def test_database_url() -> str:
    """DATABASE_URL of the database this test session runs on (pytest-django's test DB)."""
    parts = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    # The database name is the last path segment (a socket URL has the socket dir before it).
    head = parts.path.rsplit("/", 1)[0]
    return urllib.parse.urlunsplit(
        parts._replace(path=f"{head}/{connection.settings_dict['NAME']}")
    )


class Processes:
    """Starts Procfile lines as real processes against the test database; stops them all."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[tuple[str, subprocess.Popen]] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=test_database_url(),
            DJANGO_DEBUG="1",
            PATH=f"{BASE_DIR / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            ALLOWED_PRIVATE_HOSTS="127.0.0.1:*",
            MIN_INTERVAL_SECONDS="1",
            BEAT_MAX_LOOP_INTERVAL="1",
            WORKER_CONCURRENCY="2",
            PYTHONUNBUFFERED="1",
            FLOWER_DB=str(self.log_dir / "flower.db"),
        )
        env.update(extra)
        return env

    def start(self, name: str, **extra: str) -> subprocess.Popen:
        command = procfile_command(name)
        log = open(self.log_dir / f"{name}-{len(self.started)}.log", "wb")  # noqa: SIM115 (lives as long as the process)
        process = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {command}"],
            cwd=BASE_DIR,
            env=self.env(**extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started.append((name, process))
        return process

    def stop(self, process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20):
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)

    def log_of(self, name: str) -> str:
        """The whole log of every process started from the Procfile's `name` line."""
        return "".join(path.read_text() for path in sorted(self.log_dir.glob(f"{name}-*.log")))

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.log_dir.glob("*.log"))
        )

    def stop_all(self, timeout: float = 20) -> None:
        # Told all at once, then waited for: one after another, a stack of worker, beat, web
        # and Flower spent each one's shutdown in turn, at every test's end.
        running = [(name, p) for name, p in reversed(self.started) if p.poll() is None]
        for _name, process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
                # The test waited the whole timeout for it: said, so that it can be looked into.
                warnings.warn(f"{name} did not stop within {timeout:g} s of SIGTERM", stacklevel=2)


@pytest.fixture(autouse=True)
def _database_clock_is_this_hosts(monkeypatch):
    """The database runs on this host, so its clock is this one (common.database_clock): in
    process, its offset is 0 without a query, also while time_machine moves this process's
    clock alone. The processes the tests start measure theirs."""
    from common import database_clock

    monkeypatch.setattr(database_clock, "offset", lambda strict=False: 0.0)


@pytest.fixture
def processes(tmp_path) -> Iterator[Processes]:
    from project.celery import app

    # Messages left on the suite's broker by earlier tests must not reach these workers.
    app.control.purge()
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that started processes shows their logs as they were at the failure."""
    report = yield
    procs = getattr(item, "funcargs", {}).get("processes")
    if report.when == "call" and report.failed and isinstance(procs, Processes):
        report.sections.append(("logs of the started processes, at the failure", procs.logs()))
    return report


def answers(url: str) -> bool:
    """Whether an HTTP server answers at `url` (whatever its status): a process is up."""
    import requests

    try:
        requests.get(url, timeout=2)
    except (requests.ConnectionError, requests.Timeout):
        # A process still booting may accept the connection and answer late
        return False
    return True


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.25, what=""):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


@pytest.fixture
def outage():
    """Starts an outage of the test's database (tests.reliability.refuse_connections), ended
    after the test whatever happened."""
    from tests.reliability import refuse_connections

    yield lambda: refuse_connections(False)
    refuse_connections(True)


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port of 127.0.0.1 that refuses every connection for the whole test: bound, never
    listened on, so no other runner's server can take it. A port free_port() found free went to
    another test's server between the pick and the test's connection, which then read "closed
    the connection" where nobody should have answered."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]
