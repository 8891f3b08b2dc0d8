"""A run whose retry the broker refused says so, and its retry still comes.

A run's attempt failed (its source answered 503) while the broker was full: Celery could not
send the retry's message and dropped the task with a Reject and a traceback in the worker's
log, while the run said "attempt 1 failed, retrying in 1s" of a retry that was not coming.
Reconciliation sent it again later, but until then nothing on the run told its owner or staff
why it waited past its time. The run now says its retry was not sent and why, in words, and
the task ends in RETRY with the same words (runner.RetryLater.publish).
"""

from __future__ import annotations

import threading

import kombu.exceptions
import pytest
import redis
import requests

from common.error_words import CLASS_NAME
from project.celery import app
from project.devservices import free_port
from schedules import reconcile, services
from schedules.models import ImportRun
from tasks import fetch
from tasks.errors import TransientImportError
from tests.conftest import Route, wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, redis_server
from tests.test_reconcile_sends_a_lost_retry_again_once import (
    drop_messages,
    retrying_run,
    waiting_copies,
)


class BusyThenFine:
    """A source whose first answer, a 503, waits until the test lets it go; then the file."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.answer = threading.Event()
        self.requests = 0

    def __call__(self) -> Route:
        self.requests += 1
        if self.requests > 1:
            return Route(PRODUCTS_CSV.encode())
        self.asked.set()
        self.answer.wait(60)
        return Route(b"busy", 503)


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_retry_the_full_broker_refused_is_said_on_the_run_and_still_runs(
    alice, csv_server, processes, tmp_path
):
    source = BusyThenFine()
    csv_server.routes["/p.csv"] = source
    imp = make_import(alice, f"{csv_server.base_url}/p.csv", max_retries=2, retry_backoff_seconds=1)
    with redis_server(free_port(), tmp_path) as server:
        # Given a worker and beat on a broker of their own (the run locks on the suite's Redis)
        env = {**FAST, "CELERY_BROKER_URL": server.url}
        processes.start("worker", **env)
        processes.start("beat", **env)
        run = ImportRun.objects.create(
            scheduled_import=imp, trigger="manual", triggered_by=alice, celery_task_id="r-1"
        )
        args, kwargs, options = services.run_message(run)
        with app.connection_for_write(server.url) as conn:
            app.send_task(
                services.EXECUTE_RUN, args=args, kwargs=kwargs, task_id=run.celery_task_id,
                connection=conn, **options,
            )  # fmt: skip
        wait_for(source.asked.is_set, 60, what=processes.logs())

        # When the broker fills up (it evicts nothing) while the source is answering a 503
        broker = redis.Redis.from_url(server.url)
        broker.config_set("maxmemory-policy", "noeviction")
        broker.config_set("maxmemory", "1")
        source.answer.set()

        # Then the run says its retry was not sent, and why, in words
        refused = wait_for(
            lambda: ImportRun.objects.filter(
                pk=run.pk, error_message__contains="its retry was not sent"
            ).first(),
            60,
            what="the run to say its retry was refused\n" + processes.logs(),
        )
        assert refused.status == "retrying"
        assert refused.error_message.startswith("attempt 1 failed, retrying in "), refused
        assert refused.error_message.endswith(
            ": the server answered HTTP 503 Service Unavailable (its retry was not sent, the"
            " broker refuses new messages: Redis is full: it reached its maxmemory and evicts"
            " nothing; free memory or raise maxmemory: reconciliation sends it once it is due"
            " and the broker takes messages)"
        ), refused.error_message
        assert not CLASS_NAME.search(refused.error_message)
        # and the worker said it in those words (its log line follows the run's row), without
        # Celery's rejection and its traceback
        worker_log = wait_for(
            lambda: (
                (log := processes.log_of("worker"))
                and "its retry was not sent, the broker refuses new messages" in log
                and log
            ),
            30,
            what="the worker to say the retry was refused\n" + processes.logs(),
        )
        assert "reject requeue=False" not in worker_log

        # And once the broker has room again, reconciliation sends the retry and the run ends
        broker.config_set("maxmemory", "0")
        done = wait_for(
            lambda: ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(),
            90,
            what="the retry to run\n" + processes.logs(),
        )
    assert (done.status, done.attempts, done.rows_inserted) == ("succeeded", 2, 3), done
    assert source.requests == 2
    # (the attempt's own delivery, its acknowledgement lost with the worker's connection to the
    # full broker, stayed held under the run's task id and was taken for the retry: the run
    # waited 30 minutes, STALE_QUEUED_SECONDS)
    assert "run message lost, sent again import=" in processes.log_of("worker")


@pytest.mark.django_db(transaction=True)
def test_reconciliation_sends_a_refused_retry_once_whatever_the_broker_holds_of_its_task(alice):
    # Given a retrying run whose retry the broker refused, its countdown long over, while the
    # broker still has a message under its task id (its attempt's own delivery)
    run = retrying_run(alice, countdown_ended_s=300)
    args, kwargs, _ = services.run_message(run)
    app.send_task(services.EXECUTE_RUN, args=args, kwargs=kwargs, task_id=run.celery_task_id)
    ImportRun.objects.filter(pk=run.pk).update(
        error_message="attempt 1 failed, retrying in 30s: the server answered HTTP 503"
    )
    services.note_retry_not_sent(run.pk, "cannot reach the broker: connection refused")
    try:
        # When reconciliation passes twice
        first = reconcile.reconcile()
        again = reconcile.reconcile()

        # Then the retry is sent once, its flag gone, its words kept until its attempt ends
        assert (first["resent"], again["resent"]) == (1, 0)
        assert waiting_copies(run.celery_task_id) == 2
        run.refresh_from_db()
        assert (run.status, services.retry_not_sent(run)) == ("retrying", False)
        assert run.error_message.startswith(
            "attempt 1 failed, retrying in 30s: the server answered HTTP 503 (its retry was not"
            " sent, cannot reach the broker"
        )
    finally:
        drop_messages(run.celery_task_id)


def refused_retry_with_a_message_held(alice) -> ImportRun:
    """A retrying run whose retry the broker refused, its countdown long over, while the broker
    still has a message under its task id (its attempt's own delivery)."""
    run = retrying_run(alice, countdown_ended_s=300)
    args, kwargs, _ = services.run_message(run)
    app.send_task(services.EXECUTE_RUN, args=args, kwargs=kwargs, task_id=run.celery_task_id)
    ImportRun.objects.filter(pk=run.pk).update(
        error_message="attempt 1 failed, retrying in 30s: the server answered HTTP 503"
    )
    services.note_retry_not_sent(run.pk, "cannot reach the broker: connection refused")
    return run


def broker_refuses(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise kombu.exceptions.OperationalError(
            "OOM command not allowed when used memory > 'maxmemory'."
        )

    monkeypatch.setattr(app.amqp, "send_task_message", refuse)


@pytest.mark.django_db(transaction=True)
def test_a_resend_the_broker_refused_again_is_not_said_sent(alice, monkeypatch):
    # Given a retry the broker refused, the attempt's delivery still held under its task id
    run = refused_retry_with_a_message_held(alice)
    try:
        # When reconciliation sends it and the broker refuses that too
        broker_refuses(monkeypatch)
        reconcile.reconcile()

        # Then the run does not say its retry was sent (it was not)
        run.refresh_from_db()
        assert run.status == "retrying"
        assert "was sent again" not in run.error_message, run.error_message
    finally:
        monkeypatch.undo()
        drop_messages(run.celery_task_id)


@pytest.mark.django_db(transaction=True)
def test_a_resend_the_broker_refused_again_is_sent_at_the_next_pass(alice, monkeypatch):
    # Given a retry the broker refused, the attempt's delivery still held under its task id
    run = refused_retry_with_a_message_held(alice)
    try:
        # When reconciliation's resend is refused too, and the broker takes messages again
        broker_refuses(monkeypatch)
        reconcile.reconcile()
        monkeypatch.undo()
        again = reconcile.reconcile()

        # Then the next pass sends it (not 30 minutes later, STALE_QUEUED_SECONDS, as the
        # held delivery is taken for the retry once its marker is gone)
        assert again["resent"] == 1, ImportRun.objects.get(pk=run.pk).error_message
    finally:
        monkeypatch.undo()
        drop_messages(run.celery_task_id)


@pytest.mark.django_db(transaction=True)
def test_a_servers_reason_phrase_does_not_make_its_waiting_retry_look_refused(alice):
    # Given a retrying run whose retry waits in the queue (a busy worker pool), its source
    # having answered a 503 whose reason phrase reads like the refusal's note
    run = retrying_run(alice, countdown_ended_s=300)
    args, kwargs, _ = services.run_message(run)
    app.send_task(services.EXECUTE_RUN, args=args, kwargs=kwargs, task_id=run.celery_task_id)
    response = requests.Response()
    response.status_code, response.reason = 503, "Busy (its retry was not sent, ha"
    with pytest.raises(TransientImportError) as error:
        fetch.classify_status(response)
    said = f"attempt 1 failed, retrying in 30s: {error.value}"
    ImportRun.objects.filter(pk=run.pk).update(error_message=said)
    try:
        # When reconciliation passes
        first = reconcile.reconcile()

        # Then the retry waiting in the queue is not sent twice, and the server's words stay
        run.refresh_from_db()
        assert (first["resent"], waiting_copies(run.celery_task_id)) == (0, 1)
        assert run.error_message == said, run.error_message
    finally:
        drop_messages(run.celery_task_id)
