"""Sources that hold a check up: one that takes the connection and never answers, one that
answers and then drips its file a byte at a time (tests of schedules.check_slots and the
check's deadline, tasks.source_check.Deadline)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from common.redis_client import client
from schedules import check_slots


class SilentServer:
    """Takes every connection and never answers; with `drip`, answers 200 and then sends a
    byte of its file every `drip` seconds."""

    def __init__(self, drip: float | None = None) -> None:
        self.drip = drip
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.held: list[socket.socket] = []
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/products.csv"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)
            if self.drip is not None:
                threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\n\r\n")
            while not self.closed.is_set():
                conn.sendall(b"s")
                time.sleep(self.drip)

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        for conn in self.held:
            conn.close()


def check_body(url: str, **overrides) -> dict:
    return {
        "name": "products",
        "source_url": url,
        "dataset": "products",
        "key_column": "sku",
        "schedule_type": "interval",
        "interval_seconds": 3600,
        **overrides,
    }


def no_checks_in_progress() -> None:
    """Forget everyone's checks in progress: the suite's Redis outlives a test."""
    client().delete(check_slots.EVERYONE)


def held_by(user_id: int | None = None) -> int:
    """The checks in progress of `user_id`, or of everyone."""
    key = check_slots.EVERYONE if user_id is None else check_slots.user_key(user_id)
    return client().zcard(key)
