"""Result backends that misbehave, for the tests of the sweep's stores of lost tasks' ends
(tasks.lost_tasks.EndStore): one that never answers, one that trickles its answer, one that
drops its first connection, and a real Redis of the test's own; each put in place of the app's
result backend for the test."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from celery import current_app
from celery.backends.redis import RedisBackend

from project.devservices import free_port
from tasks import maintenance
from tests.reliability import RedisServer, redis_server
from tests.silent_sources import SilentServer
from tests.test_a_lost_attempts_task_result_is_its_end_not_its_progress import SWEEPER
from tests.test_health_answers_within_seconds_whatever_its_dependencies_do import Silent

Server = TypeVar("Server", SilentServer, Silent)


def serving(server: Server) -> Iterator[Server]:
    """A fixture's body: `server` for the test, closed after it (`yield from serving(...)`)."""
    try:
        yield server
    finally:
        server.close()


def use_result_backend(monkeypatch: pytest.MonkeyPatch, url: str) -> RedisBackend:
    """The app's result backend, for this test, a client of the Redis at `url`."""
    backend = RedisBackend(app=current_app, url=url)
    monkeypatch.setattr(current_app._local, "backend", backend, raising=False)
    return backend


@contextlib.contextmanager
def result_backend_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[RedisServer, RedisBackend, redis.Redis]]:
    """The app's result backend on a Redis of its own; and a client of that Redis to count with."""
    with redis_server(free_port(), tmp_path) as server:
        backend = use_result_backend(monkeypatch, server.url)
        assert current_app.backend is backend
        yield server, backend, redis.Redis.from_url(server.url)


def sweep(caplog: pytest.LogCaptureFixture) -> dict:
    """A sweep pass as the worker's sweep task runs it, its warnings kept in `caplog`."""
    caplog.set_level(logging.WARNING, logger="importbeat.maintenance")
    return maintenance.sweep_runs(reporter=SWEEPER)


def said_of_the_result_backend(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "result backend" in r.getMessage()]


class SilentRedis(SilentServer):
    """A Redis that takes every connection and never answers; `held` holds them."""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"


class TricklingRedis(SilentRedis):
    """Answers the first command on each connection with a 40-byte bulk string, a byte every
    `byte_every` seconds; stops trickling when closed."""

    ANSWER = b"$40\r\n" + b"x" * 40 + b"\r\n"

    def __init__(self, byte_every: float) -> None:
        super().__init__(drip=byte_every)

    def _drip(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.recv(65536)
            for byte in self.ANSWER:
                if self.closed.wait(self.drip):
                    return
                conn.sendall(bytes([byte]))


class DropsFirstConnection(Silent):
    """A TCP relay to `target` that closes the first connection it takes on its first bytes."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(relaying=target)

    def url(self, db: str) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _carry(self, source: socket.socket, target: socket.socket) -> None:
        if source is self.held[0]:
            # The first connection's client: read its first bytes, then close it (and its
            # upstream, whose relay thread then ends).
            with contextlib.suppress(OSError):
                source.recv(65536)
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
            return
        super()._carry(source, target)
