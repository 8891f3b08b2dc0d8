"""A run's PROGRESS is stored after its result backend's Redis restarted (or its scripts were
flushed), as before it: the state is written by a script of Redis's own (project.task_class
_EndKept), which a restarted Redis no longer holds (NOSCRIPT), and is loaded again then.

Guard (reviewB hunt): pins that the script is loaded again, as redis-py's Script does, rather
than the PROGRESS lost (runner's progress drops a failed store at DEBUG). A real Redis of its
own, killed and started again on its port (no persistence: it comes back empty)."""

import uuid

import pytest
import redis
from celery.backends.redis import RedisBackend

from project.celery import app
from project.devservices import free_port
from tasks.tasks import execute_run
from tests.reliability import redis_server

pytestmark = pytest.mark.django_db


def test_a_tasks_progress_is_stored_after_its_result_backends_redis_restarted(
    tmp_path, monkeypatch
):
    with redis_server(free_port(), tmp_path) as server:
        # Given a run's task whose progress was stored (the script loaded)
        backend = RedisBackend(app=app, url=server.url)
        monkeypatch.setattr(execute_run, "_backend", backend)
        task_id = str(uuid.uuid4())
        execute_run.backend.store_result(task_id, {"run_id": 1, "bytes_read": 10}, "PROGRESS")

        # When its scripts are flushed, then the Redis restarts empty, each before a progress
        redis.Redis.from_url(server.url).script_flush()
        execute_run.backend.store_result(task_id, {"run_id": 1, "bytes_read": 20}, "PROGRESS")
        flushed = backend.get_task_meta(task_id, cache=False)
        server.kill()
        server.start()
        execute_run.backend.store_result(task_id, {"run_id": 1, "bytes_read": 30}, "PROGRESS")

        # Then each progress is stored
        assert flushed["status"] == "PROGRESS" and flushed["result"]["bytes_read"] == 20
        restarted = backend.get_task_meta(task_id, cache=False)
        assert restarted["status"] == "PROGRESS" and restarted["result"]["bytes_read"] == 30
