"""Benchmarks: notifications taking turns (tasks/turns.py), and another owner's run behind.

1. One owner's burst of webhook notifications. Bob has `BENCH_WEBHOOK_IMPORTS` imports (1,000)
whose runs fail at once, each notifying one callback on this machine that answers after
`BENCH_WEBHOOK_ANSWER_MS` (0: at once; 3000: a slow receiver). One Procfile worker (concurrency
2) delivers them; alice's run is queued right after the burst. Printed: when alice's run ended,
when bob's last notification was delivered, and the worker's tasks (an owner's webhooks go one
at a time, tasks/turns.py: each parked notification is one task more).

2. Many owners' e-mails through a mail relay that takes a second an e-mail.
`BENCH_RELAY_OWNERS` owners (200) each have an import whose run failed, with an e-mail
notification (each owner's first e-mail goes at once: the digest holds only the ones after
it). The relay (aiosmtpd on this machine) answers each e-mail after `BENCH_RELAY_SECONDS` (1),
as a relay that opens TLS and authenticates per e-mail may. One Procfile worker (concurrency 2)
sends them (`EMAIL_CONCURRENCY` at once); alice's run is queued right after. Printed: when
alice's run ended, and when the last e-mail was delivered.

3. Flower's final states after a burst of parked webhooks shared by two worker nodes (see the
bench's own words).

4. The sweep's look at 10,000 owners' lines (`BENCH_SWEEP_LINES`).

Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable

import pytest
import redis
import requests
from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from common.redis_client import turn_line_key
from schedules import services
from schedules.models import Dataset, ImportRun, NotificationDelivery, ScheduledImport
from schedules.notifications import DELIVER
from tasks import turns
from tests.bench.deliveries import wait_for_notifications
from tests.bench.figures import report
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import start_flower
from tests.smtp_support import smtp_server
from tests.test_a_notification_that_failed_for_good_fails_its_task import AUTH
from tests.webhook_support import Hook, Slow, forget_redis_keys

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.timeout(1800),
]

IMPORTS = int(os.environ.get("BENCH_WEBHOOK_IMPORTS", "1000"))
ANSWER_MS = int(os.environ.get("BENCH_WEBHOOK_ANSWER_MS", "0"))
OWNERS = int(os.environ.get("BENCH_RELAY_OWNERS", "200"))
RELAY_SECONDS = float(os.environ.get("BENCH_RELAY_SECONDS", "1"))


def burst(owner, callback_url: str) -> list[int]:
    """IMPORTS imports of `owner`'s whose runs failed, each notifying `callback_url`; the
    notifications' ids."""
    dataset = Dataset.objects.create(owner=owner, name="feeds")
    imports = ScheduledImport.objects.bulk_create(
        [
            ScheduledImport(owner=owner, name=f"feed {n:05d}", dataset=dataset, key_column="sku",
                            source_url=f"https://feeds.example.com/{n}.csv",
                            schedule_type="interval", interval_seconds=3600,
                            callback_url=callback_url, notify_on=["failed"],
                            notify_channels=["webhook"], webhook_secret="0" * 64)
            for n in range(IMPORTS)
        ],
        batch_size=2000,
    )  # fmt: skip
    return failed_runs_notifying(imports, "webhook", callback_url)


def failed_runs_notifying(
    imports: list[ScheduledImport], channel: str, target: str = ""
) -> list[int]:
    """A failed run of each import with its notification on `channel`; their messages sent
    at once, as the runs' commits send them. The notifications' ids."""
    now = timezone.now()
    runs = ImportRun.objects.bulk_create(
        [
            ImportRun(scheduled_import=imp, trigger="schedule", status="failed", queued_at=now,
                      started_at=now, finished_at=now, attempts=1,
                      error_message="cannot reach feeds.example.com (connection refused)")
            for imp in imports
        ],
        batch_size=2000,
    )  # fmt: skip
    deliveries = NotificationDelivery.objects.bulk_create(
        [
            NotificationDelivery(scheduled_import_id=run.scheduled_import_id, run=run,
                                 event="failed", channel=channel, target=target)
            for run in runs
        ],
        batch_size=2000,
    )  # fmt: skip
    for delivery in deliveries:
        current_app.send_task(DELIVER, args=[delivery.pk])
    return [delivery.pk for delivery in deliveries]


def timed_behind(
    notify: Callable[[], list[int]], alice, csv_server, processes
) -> tuple[float, float, float, float]:
    """Once the started worker answers: `notify()`'s notifications, then a run of alice's
    queued behind them. When they started and her run was queued, how long her run took to
    end, and how long until every notification was delivered."""
    wait_for(lambda: current_app.control.ping(timeout=0.5), 60, what="worker\n" + processes.logs())
    alices = make_import(alice, csv_server.serve("/p.csv", "sku,name\n1,a\n"))
    started = time.monotonic()
    ids = notify()
    run = services.enqueue_run(alices, user=alice)
    queued = time.monotonic()
    finished = ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False)
    wait_for(finished.exists, 1200, interval=0.1, what="alice's run\n" + processes.logs())
    alices_run = time.monotonic() - queued
    wait_for_notifications(ids, ("delivered",), 1200, "the notifications\n" + processes.logs())
    return started, queued, alices_run, time.monotonic() - started


def bench_an_owners_burst_of_webhooks_and_another_owners_run(alice, bob, csv_server, processes):
    receiver = Slow(ANSWER_MS / 1000) if ANSWER_MS else Hook()
    try:
        processes.start("worker", DJANGO_DEBUG="0", DJANGO_SECRET_KEY=settings.SECRET_KEY)
        started, queued, alices_run, took = timed_behind(
            lambda: burst(bob, receiver.url), alice, csv_server, processes
        )
        tasks = sum(
            log.read_text().count("Task importbeat.deliver_notification[")
            for log in processes.log_dir.glob("worker-*.log")
        )
        report("an owner's burst of webhooks", notifications=IMPORTS, answer_ms=ANSWER_MS,
               queued_s=round(queued - started, 1), alices_run_s=round(alices_run, 2),
               all_delivered_s=round(took, 1), deliveries_per_s=round(IMPORTS / took),
               notification_tasks=tasks // 2)  # fmt: skip
    finally:
        receiver.close()


def failed_with_an_email_each() -> list[int]:
    """OWNERS owners, each with a failed run asking for an e-mail; the messages sent at once,
    as the runs' commits send them. The notifications' ids."""
    owners = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"owner{n}", email=f"owner{n}@example.com")
         for n in range(OWNERS)]
    )  # fmt: skip
    datasets = Dataset.objects.bulk_create([Dataset(owner=owner, name="feed") for owner in owners])
    imports = ScheduledImport.objects.bulk_create(
        [
            ScheduledImport(owner=dataset.owner, name="feed", dataset=dataset, key_column="sku",
                            source_url="https://feeds.example.com/f.csv",
                            schedule_type="interval", interval_seconds=3600,
                            notify_on=["failed"], notify_channels=["email"],
                            webhook_secret="0" * 64)
            for dataset in datasets
        ]
    )  # fmt: skip
    return failed_runs_notifying(imports, "email")


def bench_many_owners_emails_through_a_slow_relay_and_another_owners_run(
    alice, csv_server, processes
):
    with smtp_server(answer_seconds=RELAY_SECONDS) as (email_url, mailbox):
        processes.start("worker", EMAIL_URL=email_url, DJANGO_DEBUG="0",
                        DJANGO_SECRET_KEY=settings.SECRET_KEY)  # fmt: skip
        _, _, alices_run, took = timed_behind(
            failed_with_an_email_each, alice, csv_server, processes
        )
        report("many owners' e-mails through a slow relay", owners=OWNERS,
               relay_s=RELAY_SECONDS, alices_run_s=round(alices_run, 1),
               all_delivered_s=round(took, 1), emails=len(mailbox.received()))  # fmt: skip


def bench_flower_lists_each_parked_notification_by_its_final_state(bob, processes):
    """3. A parked notification's task ends in RETRY, and the one that gives its turn back
    sends it again under the same id (tasks/turns.py). Flower keeps a RETRY that reaches it
    after the task's later SUCCESS (celery.events.state lets RETRY override any state), so a
    re-sent task that ran on another worker before the first one's RETRY event was out would
    stay listed in RETRY. Two worker nodes share a burst of bob's `BENCH_WEBHOOK_IMPORTS`
    webhooks to a receiver that answers at once (the hand-ons quickest, the race likeliest);
    printed: Flower's final states of the notifications' tasks (all SUCCESS when no such race
    showed)."""
    receiver = Hook()
    try:
        flower = start_flower(processes, AUTH)
        for name in ("one", "two"):
            processes.start("worker", WORKER_NAME=name, DJANGO_DEBUG="0",
                            DJANGO_SECRET_KEY=settings.SECRET_KEY)  # fmt: skip
        wait_for(lambda: len(current_app.control.ping(timeout=0.5)) == 2, 60,
                 what="workers\n" + processes.logs())  # fmt: skip
        ids = burst(bob, receiver.url)
        wait_for_notifications(ids, ("delivered",), 1200, "the notifications\n" + processes.logs())

        def final_states() -> Counter[str]:
            tasks = requests.get(f"{flower}/api/tasks", params={"taskname": DELIVER},
                                 auth=AUTH, timeout=30).json()  # fmt: skip
            return Counter(task["state"] for task in tasks.values())

        # Flower saves its state every 10 s; its events come within a second or two.
        wait_for(lambda: sum(final_states().values()) == len(ids), 60, interval=1,
                 what="flower\n" + processes.logs())  # fmt: skip
        time.sleep(5)  # any late RETRY
        states = final_states()
        report("flower's final states of a parked burst, two workers", notifications=IMPORTS,
               **{state.lower(): count for state, count in sorted(states.items())},
               posts=len(receiver.requests))  # fmt: skip
    finally:
        receiver.close()


def bench_the_sweep_looks_at_ten_thousand_lines():
    """4. The sweep's look at every line (turns.send_stranded) with `BENCH_SWEEP_LINES`
    (10,000) owners each with a notification parked behind a live holder, none to send: one
    round trip for them all (one each took 0.9-1.2 s here; 0.26-0.38 s now)."""
    lines = int(os.environ.get("BENCH_SWEEP_LINES", "10000"))
    store = redis.Redis.from_url(settings.REDIS_URL)
    pipe = store.pipeline(transaction=False)
    for owner in range(lines):
        key = turns.of_owner(owner)
        pipe.zadd(f"importbeat:turns:{key}:holders", {"a live worker's": time.time() + 60})
        pipe.rpush(turn_line_key(key), f"{DELIVER} t-{owner} {owner} 0")
        pipe.hset(turns.LINES, key, 1)
    pipe.execute()
    try:
        started = time.perf_counter()
        sent = turns.send_stranded()
        report("the sweep's look at the lines", lines=lines, sent=sent,
               seconds=round(time.perf_counter() - started, 3))  # fmt: skip
    finally:
        forget_redis_keys("importbeat:turns:*")
