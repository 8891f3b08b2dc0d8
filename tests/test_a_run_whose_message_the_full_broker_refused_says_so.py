"""A run whose message the full broker refused says so at once, and the ticks behind it say why.

Beat committed a scheduled run, then a Redis at its maxmemory (evicting nothing) refused its
message. The run stayed `queued` with no words until reconciliation's next pass, as if a worker
were simply slow to take it, and the ticks skipped behind it (overlap: skip) said it "still waits
for a worker", which was untrue: its message never reached the broker. The run now says its
message was not sent and why, in words, and that reconciliation sends it once the broker takes
messages (a flag in its error_details, as a refused retry has: services.MESSAGE_NOT_SENT); the
ticks behind it say it waits for the broker; both go once its message is sent or claimed.
"""

from __future__ import annotations

import uuid

import pytest
import redis
from django.utils import timezone

from project.devservices import free_port
from schedules import reconcile, services
from schedules.models import ImportRun
from tests.api_support import client_for, make_run
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, redis_server
from tests.test_a_retry_the_broker_refused_says_so_on_its_run import broker_refuses
from tests.test_reconcile_sends_a_lost_retry_again_once import drop_messages, waiting_copies

FULL = (
    "the broker refuses new messages: Redis is full: it reached its maxmemory and evicts"
    " nothing; free memory or raise maxmemory"
)
NOT_SENT = (
    f"its message was not sent, {FULL}: reconciliation sends it once the broker takes messages"
)


def queued_run(owner) -> ImportRun:
    """A run of a scheduled tick, just committed by beat, its message not yet sent."""
    imp = make_import(owner, "http://127.0.0.1/p.csv")
    now = timezone.now()
    return make_run(
        imp, "queued", scheduled_for=now, queued_at=now, celery_task_id=str(uuid.uuid4())
    )


def refused(run: ImportRun, monkeypatch) -> None:
    """Its message sent to a broker that refuses it, full, as beat's publish sends it."""
    broker_refuses(monkeypatch)
    with pytest.raises(services.BrokerUnavailable):
        services.send_runs([run])
    monkeypatch.undo()


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_run_beat_queued_on_a_full_broker_says_so_and_the_ticks_behind_it_say_why(
    alice, admin_client, csv_server, processes, tmp_path
):
    with redis_server(free_port(), tmp_path) as server:
        # Given a worker and beat on a broker of their own, which fills up (it evicts nothing)
        env = {**FAST, "CELERY_BROKER_URL": server.url, "MISSED_TICK_GRACE_SECONDS": "60"}
        processes.start("worker", **env)
        processes.start("beat", **env)
        wait_for(lambda: "ready" in processes.log_of("worker"), 30, what=processes.logs())
        broker = redis.Redis.from_url(server.url)
        broker.config_set("maxmemory-policy", "noeviction")
        broker.config_set("maxmemory", "1")

        # When an import's ticks come every 3 seconds (overlap: skip)
        imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), interval_seconds=3)
        skipped = wait_for(
            lambda: ImportRun.objects.filter(scheduled_import=imp, status="skipped").first(),
            30,
            what="a tick skipped behind the first run\n" + processes.logs(),
        )

        # Then its first run says, in words, that its message was not sent, why, and what follows
        first = ImportRun.objects.filter(scheduled_import=imp).order_by("pk").first()
        assert (first.status, first.trigger, first.error_message) == (
            "queued", "schedule", NOT_SENT,
        ), first  # fmt: skip
        # ... and so do the API and the admin
        shown = client_for(alice).get(f"/api/v1/runs/{first.pk}/").json()
        assert shown["error_message"] == NOT_SENT, shown
        assert (
            NOT_SENT
            in admin_client.get(f"/admin/schedules/importrun/{first.pk}/change/").content.decode()
        )
        # ... and the tick skipped behind it says it waits for the broker, not for a worker
        assert skipped.error_message.endswith(
            f"still waits for the broker to take its message ({FULL}), and takes the file after"
            " this tick"
        ), skipped.error_message
        assert skipped.error_message.startswith(f"skipped: run {first.pk} of this import")
        wait_for(
            lambda: "wait for the broker to take their messages" in processes.log_of("beat"),
            30,
            what="beat to say why it skipped the tick\n" + processes.logs(),
        )

        # And once the broker has room again, reconciliation sends it, and its words go with it
        broker.config_set("maxmemory", "0")
        done = wait_for(
            lambda: ImportRun.objects.filter(pk=first.pk, finished_at__isnull=False).first(),
            60,
            what="the run to run\n" + processes.logs(),
        )
    assert (done.status, done.error_message, done.rows_inserted) == ("succeeded", "", 3), done
    assert services.MESSAGE_NOT_SENT not in done.error_details


@pytest.mark.django_db(transaction=True)
def test_a_run_sent_again_by_reconciliation_says_so_until_the_broker_takes_it(alice, monkeypatch):
    # Given a queued run whose message the full broker refused
    run = queued_run(alice)
    refused(run, monkeypatch)
    run.refresh_from_db()
    assert run.error_message == NOT_SENT
    try:
        # When reconciliation sends it again and the broker still refuses it
        broker_refuses(monkeypatch)
        reconcile.reconcile()
        monkeypatch.undo()

        # Then the run still says so
        run.refresh_from_db()
        assert (run.status, run.error_message) == ("queued", NOT_SENT)

        # When reconciliation passes once the broker takes messages
        passed = reconcile.reconcile()

        # Then its message is sent once, and the run waits for a worker without a word
        assert (passed["resent"], waiting_copies(run.celery_task_id)) == (1, 1)
        run.refresh_from_db()
        assert (run.status, run.trigger, run.error_message) == ("queued", "schedule", "")
        assert services.MESSAGE_NOT_SENT not in run.error_details
    finally:
        monkeypatch.undo()
        drop_messages(run.celery_task_id)


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_refused_message_reached_a_worker_after_all_starts_without_the_words(
    alice, monkeypatch
):
    # Given a queued run said not sent, whose message the broker took after all (a pipelined
    # publish refused midway: kombu calls its delivery uncertain)
    run = queued_run(alice)
    refused(run, monkeypatch)
    run.refresh_from_db()
    assert run.error_message == NOT_SENT

    # When a worker claims it
    assert services.claim_run(run, worker="w") == services.Claim.CLAIMED

    # Then the running run says nothing of a message not sent
    run.refresh_from_db()
    assert (run.status, run.error_message) == ("running", "")
    assert services.MESSAGE_NOT_SENT not in run.error_details


@pytest.mark.django_db(transaction=True)
def test_a_run_waiting_its_turn_keeps_its_words_when_its_message_is_refused(alice, monkeypatch):
    # Given a queued run waiting its turn (reconciliation reads those words)
    run = queued_run(alice)
    waits = f"{services.WAITING_ITS_TURN} its owner has 3 runs in progress"
    ImportRun.objects.filter(pk=run.pk).update(error_message=waits)

    # When the full broker refuses its message
    refused(run, monkeypatch)

    # Then its words stay
    run.refresh_from_db()
    assert run.error_message == waits
