"""A local webhook receiver for the alert and notification tests (the outside world), and the
runs they are told of."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from common import database_clock
from schedules import services
from schedules.models import ImportRun, NotificationDelivery
from tests.factories import make_import
from tests.http_support import QuietHTTPServer

SOURCE = "http://127.0.0.1:9/products.csv"


class Hook:
    """A webhook receiver: answers the statuses it is given, then `status` (200), with `headers`
    and `body`, and keeps every request's headers and body.

    `body` is bytes, or a function giving the chunks to write one at a time, each flushed (an
    answer that drips: say its Content-Length in `headers`). `on_post(n)` is called as the n-th
    POST is taken, before it is answered."""

    def __init__(
        self,
        statuses: list[int] | None = None,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        body: bytes | Callable[[], Iterable[bytes]] = b"",
        path: str = "/hook",
        on_post: Callable[[int], None] | None = None,
    ) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])
        self.status = status
        self.headers = dict(headers or {})
        self.body = body
        self.path = path
        self.on_post = on_post
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append((dict(self.headers), body))
                if hook.on_post is not None:
                    hook.on_post(len(hook.requests))
                hook.answer(self, hook.statuses.pop(0) if hook.statuses else hook.status)

            def log_message(self, *args) -> None:
                pass

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, handler: http.server.BaseHTTPRequestHandler, status: int) -> None:
        handler.send_response(status)
        for name, value in self.headers.items():
            handler.send_header(name, value)
        if "Content-Length" not in self.headers:
            assert isinstance(self.body, bytes), "a dripping body says its Content-Length"
            handler.send_header("Content-Length", str(len(self.body)))
        handler.end_headers()
        chunks = [self.body] if isinstance(self.body, bytes) else self.body()
        with contextlib.suppress(OSError):  # (the worker may hang up before the body's end)
            for chunk in chunks:
                if chunk:
                    handler.wfile.write(chunk)
                    handler.wfile.flush()

    @property
    def received(self) -> list[Any]:
        """The bodies, parsed."""
        return [json.loads(body) for _, body in self.requests]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{self.path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Silent:
    """A callback that takes connections and never answers: a receiver that hangs. Counts the
    connections it was given."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.held: list[socket.socket] = []
        self.closed = threading.Event()
        threading.Thread(target=self._take, daemon=True).start()

    def _take(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)
            self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        """Nothing: the connection is held open, unanswered."""

    @property
    def connections(self) -> int:
        return len(self.held)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        for conn in self.held:
            conn.close()


class Dripping(Silent):
    """A callback that starts its answer and then drips it, a byte every `every` seconds: no
    single wait is long, and the answer never ends."""

    def __init__(self, every: float = 0.2) -> None:
        self.every = every
        super().__init__()

    def _answer(self, conn: socket.socket) -> None:
        threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            while not self.closed.is_set():
                conn.sendall(b"x")
                time.sleep(self.every)
        except OSError:
            return


class Slow(Hook):
    """Answers 200, each POST after `seconds`: a receiver that is slow but answers (well within
    the read timeout). Counts the POSTs it is answering at once, and the most it ever was."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.answering = 0
        self.most_at_once = 0
        self.answered = 0
        self._count = threading.Lock()
        super().__init__()
        handler = self.httpd.RequestHandlerClass
        slow = self

        class SlowHandler(handler):  # type: ignore[misc, valid-type]
            def do_POST(self) -> None:
                with slow._count:
                    slow.answering += 1
                    slow.most_at_once = max(slow.most_at_once, slow.answering)
                try:
                    time.sleep(slow.seconds)
                    super().do_POST()
                finally:
                    with slow._count:
                        slow.answering -= 1
                        slow.answered += 1

        self.httpd.RequestHandlerClass = SlowHandler


def when_due(delivery_id: int, clock: Any = None) -> None:
    """Bring on the moment the notification `delivery_id`'s retry comes: its next attempt's
    time, as its log says it (a retry's message waits its countdown, and one that comes sooner
    sends nothing: notifications.start). `clock` (time_machine's) is moved on to it; without
    one, the log's time is brought to now, as when the countdown has ended."""
    waiting = NotificationDelivery.objects.filter(pk=delivery_id)
    due = waiting.values_list("next_attempt_at", flat=True).first()
    now = database_clock.now()
    if due is None or due <= now:
        return
    if clock is not None:
        clock.shift(due - now)
    else:
        waiting.update(next_attempt_at=now)


def forget_redis_keys(pattern: str) -> None:
    """Delete the keys matching `pattern` from the suite's Redis (shared by a runner's tests),
    where a test noted state that must not reach the next one."""
    from django.conf import settings

    store = redis.Redis.from_url(settings.REDIS_URL)
    for key in store.scan_iter(pattern):
        store.delete(key)


def finished_run(imp, status: str = "failed", *, started_at=None, **outcome: Any) -> ImportRun:
    """A scheduled run of `imp` that a worker took and ended `status`, with finish_run's
    `outcome` (counts, error)."""
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="schedule", status="running", attempts=1,
        started_at=started_at,
    )  # fmt: skip
    return services.finish_run(run, status, **outcome)


def failed_run_notified(owner, callback_url: str) -> NotificationDelivery:
    """Given the owner's import notifying `callback_url` of each failed run, a run of it that
    failed: the webhook of it, not posted yet."""
    imp = make_import(owner, SOURCE, notify_on=["failed"], notify_channels=["webhook"],
                      callback_url=callback_url, alert_after_failures=0)  # fmt: skip
    finished_run(imp, "failed", error="boom")
    (delivery,) = NotificationDelivery.objects.all()
    return delivery
