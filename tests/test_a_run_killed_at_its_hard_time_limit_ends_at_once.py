"""A run whose attempt the worker kills at its hard time limit ends `timed_out` at once, in the
run's words everywhere: Flower showed Celery's own `ExceptionWithTraceback()` for its task, and
the run stayed `running` until the sweep found it two lease periods later (two minutes by
default), its import's lease held by the dead attempt meanwhile."""

import threading
import time

import pytest
import requests

from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import big_csv, start_flower, wait_for_download

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

AUTH = ("ops", "s3cret-flower")
HARD_LIMIT = 3


def test_a_run_killed_at_its_hard_time_limit_ends_timed_out_at_once(
    alice, bob, csv_server, processes, monkeypatch
):
    # Given a worker whose sweep would not look for two minutes, Flower, and an import whose
    # download outlasts the hard time limit of its message, its soft limit out of reach (an
    # attempt stuck where the soft limit cannot stop it)
    processes.start(
        "worker", RUN_LEASE_SECONDS="60", MAINTENANCE_INTERVAL_SECONDS="600",
        WORKER_CONCURRENCY="1", MAX_RUNNING_PER_OWNER="0",
    )  # fmt: skip
    base = start_flower(processes, AUTH)
    url = csv_server.serve("/big.csv", big_csv(20_000), chunk_delay=1.0)
    imp = make_import(alice, url, name="stuck", timeout_seconds=300, max_retries=2)
    # ... and a slow run queued behind it, which the slot the kill frees goes to: the killed
    # run's end waited behind it
    slow = make_import(
        bob, csv_server.serve("/slow.csv", big_csv(20_000), chunk_delay=0.6), name="slow"
    )
    monkeypatch.setattr(
        services, "run_message", with_hard_limit(services.run_message, HARD_LIMIT, imp.pk)
    )

    # When it runs and the worker kills it
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    behind = services.enqueue_run(slow, trigger="manual", user=bob)
    wait_for_download(csv_server, run)
    killed_at = time.monotonic()
    run = wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(),
        40,
        what="the killed run to end\n" + processes.logs(),
    )

    # Then the run ends timed out within seconds, not retried, in words
    ended_after = time.monotonic() - killed_at
    print(f"\n[figures] hard time limit: ended {ended_after:.1f}s after the download began")
    assert run.status == "timed_out"
    assert ImportRun.objects.get(pk=behind.pk).finished_at is None
    assert run.attempts == 1
    assert run.error_message == "the run exceeded its 300s time limit (killed)"
    # ... and Flower's task says so, not Celery's `ExceptionWithTraceback()`
    task = wait_for(lambda: _final_task(base, run.celery_task_id), 30, what="the task in flower")
    assert task["state"] == "FAILURE"
    assert "ExceptionWithTraceback" not in task["exception"]
    assert (
        f"run {run.pk} timed_out: the run exceeded its 300s time limit (killed)"
        in (task["exception"])
    )

    # ... and the import runs again at once: the dead attempt's lease is freed
    csv_server.serve("/big.csv", PRODUCTS_CSV)
    monkeypatch.undo()
    again = services.enqueue_run(imp, trigger="manual", user=alice)
    again = wait_for(
        lambda: ImportRun.objects.filter(pk=again.pk, finished_at__isnull=False).first(),
        30,
        what="the next run\n" + processes.logs(),
    )
    assert again.status == "succeeded", again.error_message


def test_a_killed_run_hands_its_owners_slot_on_from_the_worker(
    alice, csv_server, processes, monkeypatch
):
    # Given alice's cap of one, held by her run stuck past its hard time limit, and her next
    # run parked in her line, with no sweep for ten minutes
    processes.start(
        "worker", RUN_LEASE_SECONDS="60", MAINTENANCE_INTERVAL_SECONDS="600",
        WORKER_CONCURRENCY="2", MAX_RUNNING_PER_OWNER="1",
    )  # fmt: skip
    url = csv_server.serve("/big.csv", big_csv(20_000), chunk_delay=1.0)
    imp = make_import(alice, url, name="stuck", timeout_seconds=300)
    monkeypatch.setattr(
        services, "run_message", with_hard_limit(services.run_message, HARD_LIMIT, imp.pk)
    )
    stuck = services.enqueue_run(imp, trigger="manual", user=alice)
    wait_for_download(csv_server, stuck)
    nxt = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), name="next")
    waiting = services.enqueue_run(nxt, trigger="manual", user=alice)
    wait_for(
        lambda: ImportRun.objects.filter(
            pk=waiting.pk, error_message__startswith=services.WAITING_ITS_TURN
        ).exists(),
        30,
        what="the next run to wait its turn\n" + processes.logs(),
    )

    # When the worker kills the stuck run, then the parked one runs at once, sent by the
    # worker's main process that ended the killed one (it waited for the sweep)
    waiting = wait_for(
        lambda: ImportRun.objects.filter(pk=waiting.pk, finished_at__isnull=False).first(),
        30,
        what="the parked run to run\n" + processes.logs(),
    )
    assert ImportRun.objects.get(pk=stuck.pk).status == "timed_out"
    assert waiting.status == "succeeded", waiting.error_message


def with_hard_limit(run_message, limit: float, import_id: int | None = None):
    """`run_message` whose runs (of `import_id` only, when given) are sent with a hard time
    limit of `limit` seconds and no soft one."""

    def message(run):
        args, kwargs, options = run_message(run)
        if import_id is not None and run.scheduled_import_id != import_id:
            return args, kwargs, options
        # No soft limit: the worker schedules the hard one after the soft one has fired.
        return args, kwargs, {**options, "time_limit": limit, "soft_time_limit": None}

    return message


def _final_task(base: str, task_id: str) -> dict | None:
    answer = requests.get(f"{base}/api/task/info/{task_id}", auth=AUTH, timeout=5)
    if answer.status_code != 200:
        return None
    task = answer.json()
    if task.get("state") == "FAILURE" and "time limit" in (task.get("exception") or ""):
        return task
    return None


def test_a_killed_attempt_ends_its_run_and_frees_its_lease_alone(alice):
    from tasks import killed_runs, locks

    imp = make_import(alice, "http://127.0.0.1/p.csv", name="killed", timeout_seconds=300)
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="schedule", status="running", attempts=1,
        celery_task_id="attempt-2",
    )  # fmt: skip
    dead = locks.run_lease(imp.pk, run.pk)
    assert dead.acquire()
    # An earlier attempt's kill, told late, ends nothing
    killed_runs.end(run.pk, "attempt-1", reporter="worker@test")
    assert ImportRun.objects.get(pk=run.pk).status == "running"
    assert locks.run_lease_holder(imp.pk) == run.pk
    # Another run's lease is left alone
    other = ImportRun.objects.create(
        scheduled_import=make_import(alice, "http://127.0.0.1/q.csv", name="other"),
        trigger="schedule", status="running", attempts=1, celery_task_id="attempt-9",
    )  # fmt: skip
    assert not locks.free_dead_runs_lease(imp.pk, other.pk)
    assert locks.run_lease_holder(imp.pk) == run.pk

    # The attempt killed ends its run timed out and frees the import's lease
    killed_runs.end(run.pk, "attempt-2", reporter="worker@test")
    run.refresh_from_db()
    assert (run.status, run.error_message) == (
        "timed_out",
        "the run exceeded its 300s time limit (killed)",
    )
    assert locks.run_lease_holder(imp.pk) is None


def test_a_killed_run_says_the_limit_it_ran_under(alice):
    # It said the import's timeout of now: "3600s" of a run killed at its 60 s limit
    imp = make_import(alice, "http://127.0.0.1/p.csv", name="raised", timeout_seconds=3600)
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="schedule", status="running", attempts=1,
        celery_task_id="attempt-1",
    )  # fmt: skip

    run = services.end_killed_run(run.pk, "attempt-1", limit_seconds=60)

    assert run.error_message == (
        "the run exceeded its 60s time limit (set when it was queued; the import's is now "
        "3600s) (killed)"
    )


def test_a_killed_run_the_main_process_could_not_end_says_its_limit_through_the_task(alice):
    # The task sent when the main process could not end the run (its row still locked by the
    # dead attempt's statement) carried no limit: a run killed under 60 s said the import's
    # 3600 s (review).
    import json
    from base64 import b64decode

    import psycopg
    import redis
    from django.conf import settings
    from django.db import connection

    from tasks import killed_runs
    from tasks.tasks import end_killed_run

    imp = make_import(alice, "http://127.0.0.1/p.csv", name="locked", timeout_seconds=3600)
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="schedule", status="running", attempts=1,
        celery_task_id="attempt-1",
    )  # fmt: skip
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("celery")
    params = connection.get_connection_params()
    with psycopg.connect(
        dbname=params["dbname"], user=params.get("user"), host=params.get("host"),
        port=params.get("port"), autocommit=False,
    ) as dead_attempt:  # fmt: skip
        dead_attempt.execute(
            f"SELECT 1 FROM {ImportRun._meta.db_table} WHERE id = %s FOR UPDATE", [run.pk]
        )
        words = killed_runs.ending_when_killed(
            services.EXECUTE_RUN, "attempt-1", [run.pk], 90, 60
        ).words
        dead_attempt.rollback()
    assert "time limit" in words
    assert ImportRun.objects.get(pk=run.pk).status == "running"  # not ended at once
    sent = [json.loads(message) for message in broker.lrange("celery", 0, -1)]
    ends = [m for m in sent if m["headers"]["task"] == killed_runs.END_KILLED_RUN]
    assert len(ends) == 1
    args = json.loads(b64decode(ends[0]["body"]))[0]

    end_killed_run.apply(args=args)

    assert ImportRun.objects.get(pk=run.pk).error_message == (
        "the run exceeded its 60s time limit (set when it was queued; the import's is now "
        "3600s) (killed)"
    )


def test_a_killed_attempts_process_is_dead_before_its_run_is_ended(alice, monkeypatch):
    # The pool tells of the kill before it kills: the run was ended and its import's lease
    # freed while the stuck attempt still lived, and another run could start beside it (review).
    import subprocess
    import sys

    from tasks import killed_runs

    imp = make_import(alice, "http://127.0.0.1/p.csv", name="stuck")
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="schedule", status="running", attempts=1,
        celery_task_id="attempt-1",
    )  # fmt: skip
    attempt = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    alive_when_ended = []
    real_end = services.end_killed_run

    def ending(*args, **kwargs):
        alive_when_ended.append(attempt.poll() is None)
        return real_end(*args, **kwargs)

    monkeypatch.setattr(services, "end_killed_run", ending)
    try:
        killed_runs.ending_when_killed(
            services.EXECUTE_RUN, "attempt-1", [run.pk], 90, 60, attempt.pid
        )
    finally:
        attempt.kill()
        attempt.wait()

    assert alive_when_ended == [False]
    assert ImportRun.objects.get(pk=run.pk).status == "timed_out"


def test_a_killed_run_hands_its_owners_slot_on_at_once(alice, csv_server, settings, sent):
    # The attempt's own hand-on died with it: a run parked in its owner's line waited for the
    # sweep (a minute by default) while the slot stood free.
    from celery.exceptions import Retry

    from tasks import killed_runs, runner
    from tests.bound_task import BoundTask as FakeTask

    settings.MAX_RUNNING_PER_OWNER = 1
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    stuck = ImportRun.objects.create(
        scheduled_import=make_import(alice, url, name="stuck", timeout_seconds=300),
        trigger="schedule", status="running", attempts=1, celery_task_id="attempt-1",
    )  # fmt: skip
    waiting = ImportRun.objects.create(
        scheduled_import=make_import(alice, url, name="waiting"), trigger="manual"
    )
    with pytest.raises(Retry):
        runner.execute(waiting.pk, task=FakeTask())  # parked in alice's line
    assert sent == []

    killed_runs.ending_when_killed(services.EXECUTE_RUN, "attempt-1", [stuck.pk], 90, 60)

    assert ImportRun.objects.get(pk=stuck.pk).status == "timed_out"
    # (handed on from a thread: the worker's main process does not wait for it)
    wait_for(lambda: sent == [waiting.pk], 30, what=f"the parked run to be sent: {sent}")
    for thread in threading.enumerate():
        if thread.name == "importbeat-hand-on":
            thread.join(10)
