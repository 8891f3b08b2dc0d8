"""`make run` / `make test` fall back to embedded PostgreSQL and Redis when theirs do not answer."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent

PROBE = """
import os, psycopg, redis, environ
db = environ.Env.db_url_config(os.environ["DATABASE_URL"])
with psycopg.connect(host=db["HOST"], port=db["PORT"] or None, user=db["USER"],
                     dbname=db["NAME"]) as conn:
    print("postgres", conn.execute("select 1").fetchone()[0])
print("redis", redis.Redis.from_url(os.environ["REDIS_URL"]).ping())
print("urls", os.environ["DATABASE_URL"], os.environ["REDIS_URL"])
"""


@pytest.mark.processes
def test_unreachable_urls_fall_back_to_embedded_servers_that_answer():
    # Given DATABASE_URL and REDIS_URL that point at closed ports
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/nothing",
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }

    # When a command runs under devservices
    result = subprocess.run(
        [sys.executable, "-m", "project.devservices", "run", "--", sys.executable, "-c", PROBE],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # Then it sees an embedded PostgreSQL and a private Redis that both answer
    assert result.returncode == 0, result.stderr
    assert "postgres 1" in result.stdout and "redis True" in result.stdout
    assert "falling back to the embedded PostgreSQL" in result.stderr
    assert "falling back to the embedded Redis" in result.stderr
    urls = result.stdout.split("urls ", 1)[1]
    assert "127.0.0.1:1/" not in urls


def test_the_command_exit_code_is_passed_through():
    result = subprocess.run(
        [sys.executable, "-m", "project.devservices", "run", "--", "sh", "-c", "exit 5"],
        cwd=BASE_DIR,
        env={**os.environ},
        capture_output=True,
        timeout=120,
    )

    # pytest's "no tests collected" (5) must reach `make test` and fail CI.
    assert result.returncode == 5
