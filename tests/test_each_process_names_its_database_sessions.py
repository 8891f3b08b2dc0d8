"""Each process names its PostgreSQL sessions (`application_name`), so that an operator whose
server is at its max_connections counts who holds them in `pg_stat_activity`.

Regression (clients hunt): every session of the web, the workers and beat was named '', and
one user ran them all: the connections could be counted, not told apart.
"""

from __future__ import annotations

import pytest
import requests
from django.db import connection
from knox.models import AuthToken

from common.application_name import application_name
from project.devservices import free_port
from schedules import services
from schedules.models import ImportRun
from tests.conftest import answers, wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def session_names() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
        )
        return {name for (name,) in cursor.fetchall()}


def test_the_web_a_worker_and_beat_name_their_sessions(alice, csv_server, processes):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    _, token = AuthToken.objects.create(user=alice, expiry=None)
    port = free_port()
    # Given a web, a worker and beat, each with a session open
    processes.start("web", PORT=str(port), WEB_CONCURRENCY="1")
    processes.start("worker", **FAST)
    processes.start("beat", **FAST)
    base = f"http://127.0.0.1:{port}/api/v1"
    wait_for(lambda: answers(f"{base}/health"), 30, what="web\n" + processes.logs())
    requests.get(f"{base}/imports/", headers={"Authorization": f"Token {token}"}, timeout=30)
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, status="succeeded").exists(), 60,
        what="the run\n" + processes.logs(),
    )  # fmt: skip

    # When the operator lists the database's sessions
    # Then each process's are named after it
    expected = {"importbeat web", "importbeat worker", "importbeat beat"}
    wait_for(
        lambda: expected <= session_names(), 30,
        what=f"sessions named {expected}, not only {session_names()}",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["/app/.venv/bin/gunicorn", "project.wsgi", "--bind", "0.0.0.0:8000"], "importbeat web"),
        (["/app/.venv/bin/celery", "-A", "project", "worker", "--concurrency=2"],
         "importbeat worker"),
        (["celery", "-A", "project", "beat", "--loglevel=INFO"], "importbeat beat"),
        (["celery", "-A", "project", "flower", "--port=5555"], "importbeat flower"),
        (["manage.py", "run_import", "7"], "importbeat run_import"),
        (["/usr/bin/python3"], "importbeat"),
    ],
)  # fmt: skip
def test_a_process_is_named_by_its_command_line(argv, name):
    assert application_name(argv) == name
