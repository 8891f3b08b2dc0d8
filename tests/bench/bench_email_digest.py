"""Benchmark: an owner's e-mails when ten thousand of their imports fail at once.

One owner, `BENCH_DIGEST_IMPORTS` imports (10,000) whose source went down: every import's
failed run asks for an e-mail, twice (two ticks in a row). One Procfile worker (concurrency 2)
delivers them through a real SMTP server on this machine (aiosmtpd, `EMAIL_URL`), with
`EMAIL_DIGEST_SECONDS` = `BENCH_DIGEST_SECONDS` (20).

1. The first tick: the notifications and their messages all at once, as the runs' commits queue
   them: the time until every one is delivered, the worker's tasks a second, and the e-mails
   the server received (one per notification before the digest: as many e-mails as imports).
2. The second tick, within the interval after the first e-mail: the time until every one is
   `held` (tasks a second), then until the digest is delivered, and the e-mails.

Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import time

import pytest
from celery import current_app
from django.conf import settings
from django.utils import timezone

from schedules.models import Dataset, ImportRun, NotificationDelivery, ScheduledImport
from schedules.notifications import DELIVER
from tests.bench.deliveries import wait_for_notifications
from tests.bench.figures import report
from tests.conftest import wait_for
from tests.smtp_support import smtp_server

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.timeout(1800),
]

IMPORTS = int(os.environ.get("BENCH_DIGEST_IMPORTS", "10000"))
DIGEST_SECONDS = int(os.environ.get("BENCH_DIGEST_SECONDS", "20"))


def make_imports(owner) -> list[ScheduledImport]:
    """IMPORTS imports of `owner` that notify their failures by e-mail (no beat entries: their
    notifications need none). Without `notify_on`, every e-mail was skipped as no longer asked
    for, and the bench waited for deliveries that never came."""
    dataset = Dataset.objects.create(owner=owner, name="feeds")
    return ScheduledImport.objects.bulk_create(
        [
            ScheduledImport(
                owner=owner,
                name=f"feed {n:05d}",
                dataset=dataset,
                key_column="sku",
                source_url=f"https://feeds.example.com/{n}.csv",
                schedule_type="interval",
                interval_seconds=3600,
                notify_on=["failed"],
                notify_channels=["email"],
                webhook_secret="0" * 64,
            )
            for n in range(IMPORTS)
        ],
        batch_size=2000,
    )


def tick_fails(imports: list[ScheduledImport]) -> list[int]:
    """A failed run per import and its e-mail notification, as finish_run makes them; their
    messages sent at once, as the runs' commits send them. The notifications' ids."""
    now = timezone.now()
    runs = ImportRun.objects.bulk_create(
        [
            ImportRun(
                scheduled_import=imp,
                trigger="schedule",
                status="failed",
                queued_at=now,
                started_at=now,
                finished_at=now,
                attempts=1,
                error_message="cannot reach feeds.example.com (connection refused)",
            )
            for imp in imports
        ],
        batch_size=2000,
    )
    deliveries = NotificationDelivery.objects.bulk_create(
        [
            NotificationDelivery(
                scheduled_import_id=run.scheduled_import_id,
                run=run,
                event="failed",
                channel="email",
            )
            for run in runs
        ],
        batch_size=2000,
    )
    for delivery in deliveries:
        current_app.send_task(DELIVER, args=[delivery.pk])
    return [delivery.pk for delivery in deliveries]


def bench_an_owners_emails_when_ten_thousand_imports_fail(alice, processes):
    imports = make_imports(alice)
    with smtp_server() as (email_url, mailbox):
        processes.start(
            "worker", EMAIL_URL=email_url, EMAIL_DIGEST_SECONDS=str(DIGEST_SECONDS),
            DJANGO_DEBUG="0", DJANGO_SECRET_KEY=settings.SECRET_KEY,
        )  # fmt: skip
        wait_for(
            lambda: current_app.control.ping(timeout=0.5), 60, what="worker\n" + processes.logs()
        )

        started = time.monotonic()
        first = tick_fails(imports)
        sent_at = time.monotonic()
        wait_for_notifications(
            first, ("delivered",), 600, "the first tick's e-mails\n" + processes.logs()
        )
        took = time.monotonic() - started
        report("first tick", notifications=IMPORTS, queued_s=round(sent_at - started, 1),
               all_delivered_s=round(took, 1), tasks_per_s=round(IMPORTS / took),
               emails=len(mailbox.received()), emails_before_the_digest=IMPORTS)  # fmt: skip

        started = time.monotonic()
        second = tick_fails(imports)
        wait_for_notifications(
            second, ("held", "delivered"), 600, "the second tick held\n" + processes.logs()
        )
        held_in = time.monotonic() - started
        wait_for_notifications(second, ("delivered",), 600, "the digest\n" + processes.logs())
        took = time.monotonic() - started
        messages = mailbox.received()
        report("second tick, within the interval", notifications=IMPORTS,
               all_held_or_sent_s=round(held_in, 1), tasks_per_s=round(IMPORTS / held_in),
               all_delivered_s=round(took, 1), interval_s=DIGEST_SECONDS,
               emails=len(messages), last_subject=repr(messages[-1]["Subject"]),
               emails_before_the_digest=IMPORTS * 2)  # fmt: skip
