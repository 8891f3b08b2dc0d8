"""A process started without REDIS_URL says so in one line naming it; Flower says a broker it
cannot reach in words, once.

Each process (manage.py, the worker, beat, Flower, the web process) printed a traceback of 50 to
90 lines ending in ImproperlyConfigured (settings), and Flower logged "Failed to capture events:
'Error 111 connecting to …'" at each of its attempts, with the library's text, and as much for
each of its four questions to the workers (the says hunt). Real processes, the Procfile's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from project.devservices import free_port
from tests.conftest import BASE_DIR, procfile_command

pytestmark = pytest.mark.processes

NOT_SET = "importbeat not started: REDIS_URL is not set"


def environment(**extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "DJANGO_DEBUG"}
    }
    env.update(
        IMPORTBEAT_SERVICES_ENV="/nonexistent/services.env",
        DJANGO_SECRET_KEY="not-a-secret",
        FLOWER_BASIC_AUTH="ops:secret",
        PATH=f"{BASE_DIR / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        PORT=str(free_port()),
        FLOWER_PORT=str(free_port()),
        WEB_CONCURRENCY="1",  # each of gunicorn's workers says it: one here
        **extra,
    )
    return env


def said(command: str, env: dict[str, str], seconds: float) -> tuple[int | None, str]:
    """What `command` printed, and its exit status (None: still running after `seconds`, then
    stopped)."""
    process = subprocess.Popen(
        ["/bin/sh", "-c", f"exec {command}"], cwd=BASE_DIR, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=seconds)
        return process.returncode, output
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        return None, output


@pytest.mark.parametrize(
    "command",
    [
        procfile_command("web"),
        procfile_command("worker"),
        procfile_command("beat"),
        procfile_command("flower"),
        ".venv/bin/python manage.py showmigrations",
    ],
    ids=["web", "worker", "beat", "flower", "manage.py"],
)
def test_a_process_without_redis_url_stops_in_one_line_naming_it(command):
    status, output = said(command, environment(), 60)

    assert status not in (None, 0), output[-2000:]
    assert "Traceback" not in output, output[-2000:]
    assert [line for line in output.splitlines() if "REDIS_URL" in line] == [
        line for line in output.splitlines() if line.startswith(NOT_SET)
    ], output[-2000:]
    assert output.count(NOT_SET) == 1, output[-2000:]


def test_flower_says_a_broker_it_cannot_reach_in_words_once(tmp_path, refused_port):
    # Given Flower on a broker that refuses connections (Flower backs off: 2, 4, 8 s, ...)
    away = f"redis://127.0.0.1:{refused_port}/0"
    env = environment(REDIS_URL=away, CELERY_BROKER_URL=away, FLOWER_DB=str(tmp_path / "flower.db"))

    # When it has tried for a while
    started = time.monotonic()
    _, output = said(procfile_command("flower"), env, 16)
    assert time.monotonic() - started >= 15

    # Then it said why in words, once, and nothing of the library's
    reasons = [
        line for line in output.splitlines() if "Flower cannot read the workers' events" in line
    ]
    assert len(reasons) == 1, output[-3000:]
    assert reasons[0].endswith(f"cannot reach the broker at {away[8:-2]}: connection refused")
    assert "Error 111" not in output, output[-3000:]
    assert "Failed to capture events" not in output, output[-3000:]
    asked = [line for line in output.splitlines() if "Flower cannot ask the workers" in line]
    assert len(asked) <= 1, output[-3000:]


@pytest.mark.django_db
def test_flower_says_a_broker_users_acl_refusal_in_words(caplog):
    """Flower's "Failed to enable events: this user has no permissions to run the 'publish'
    command" (redis-py's text, through kombu) is said as the broker's refusal, in words."""
    import logging

    from kombu.exceptions import OperationalError
    from redis.exceptions import NoPermissionError

    from common import flower_words

    flower_words.install()
    refused = NoPermissionError("this user has no permissions to run the 'publish' command")
    try:
        raise OperationalError(str(refused)) from refused
    except OperationalError as error:
        with caplog.at_level(logging.WARNING, logger="flower.events"):
            for _ in range(3):
                logging.getLogger("flower.events").warning("Failed to enable events: %s", error)

    said = [record.getMessage() for record in caplog.records if record.name == "flower.events"]
    assert len(said) == 1, said
    assert said[0].startswith("Flower cannot turn the workers' events on: the broker at ")
    assert said[0].endswith(
        "refuses: the Redis user is not allowed to run what importbeat needs: check its ACL"
    ), said


@pytest.mark.django_db
def test_flower_says_workers_that_did_not_answer_without_blaming_the_broker(caplog):
    """Flower's "Inspect method stats failed" with no error is a question no worker answered
    in time (none runs, or they are busy): it was said as "cannot reach the broker" (review)."""
    import logging

    from common import flower_words

    flower_words.install()
    with caplog.at_level(logging.WARNING, logger="flower.inspector"):
        for method in ("stats", "registered", "conf"):
            logging.getLogger("flower.inspector").warning("Inspect method %s failed", method)

    said = [record.getMessage() for record in caplog.records if record.name == "flower.inspector"]
    assert said == ["Flower asked the workers how they are: none answered in time"], said
