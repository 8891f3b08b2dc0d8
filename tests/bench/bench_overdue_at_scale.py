"""Benchmark: 10,000 imports overdue at once (beat stopped for an hour), and their late e-mails.

`BENCH_OVERDUE_IMPORTS` hourly imports (10,000) of `BENCH_OVERDUE_OWNERS` owners (500, 20
imports each), every one's next tick an hour ago, as a beat stopped for an hour leaves them.
A worker that finds no beat sends `importbeat.start_overdue_late_streaks` (project.beat_watch);
here the task itself is called in this process, on the real database and broker: printed, how
long it takes against its soft time limit, its statements (by shape) and the messages it left
on the broker.

Meanwhile one Procfile worker (concurrency 2), on a real SMTP server on this machine (aiosmtpd,
`EMAIL_URL`) with `EMAIL_DIGEST_SECONDS` = `BENCH_OVERDUE_DIGEST_SECONDS` (60; the default is
300), delivers the late notices as the task queues them, and the sweep passes every
MAINTENANCE_INTERVAL_SECONDS (called here, as beat would; it sends the notifications stranded in
the mail relay's line, tasks.turns): the time until every one is delivered or held, until every
one is delivered (the digests), the sweeps it took, the most notifications parked in the mail
relay's line, the e-mails the server received, and per owner (most, fewest, median).

Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from collections import Counter, defaultdict, deque
from datetime import timedelta

import pytest
import redis
from celery import current_app
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from common import database_clock
from common.redis_client import turn_line_key
from schedules.models import NotificationDelivery, ScheduledImport
from tasks import maintenance, tasks, turns
from tests.bench.bench_retention_at_scale import owners_and_imports
from tests.bench.figures import report
from tests.conftest import wait_for
from tests.smtp_support import smtp_server

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.timeout(3600),
]

IMPORTS = int(os.environ.get("BENCH_OVERDUE_IMPORTS", "10000"))
OWNERS = int(os.environ.get("BENCH_OVERDUE_OWNERS", "500"))
DIGEST_SECONDS = int(os.environ.get("BENCH_OVERDUE_DIGEST_SECONDS", "60"))
QUEUE = "celery"
MAIL_LINE = turn_line_key(turns.MAIL)


def shape(sql: str) -> str:
    """A statement's verb and table."""
    verb = sql.split(None, 1)[0]
    table = re.search(r'(?:FROM|UPDATE|INTO)\s+"?(\w+)"?', sql)
    return f"{verb} {table[1]}" if table else verb


def late(ids: list[int], *statuses: str) -> int:
    return NotificationDelivery.objects.filter(
        event="late", scheduled_import_id__in=ids, status__in=statuses
    ).count()


class Sweeps:
    """Waits as a deployment does: the sweep (maintenance.sweep_runs, which sends a notification
    stranded in its turns' line: tasks.turns) every MAINTENANCE_INTERVAL_SECONDS, as beat would
    (no beat here: it would reconcile the overdue imports' ticks). Counts the passes, and the
    most notifications seen parked in the mail relay's line."""

    def __init__(self) -> None:
        self.count = 0
        self.most_parked = 0
        self.last = time.monotonic()

    def wait(self, done, processes, timeout: float = 1800) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            self.most_parked = max(self.most_parked, broker_store().llen(MAIL_LINE))
            if time.monotonic() > deadline:
                raise AssertionError("not done in time\n" + processes.logs())
            if time.monotonic() - self.last >= settings.MAINTENANCE_INTERVAL_SECONDS:
                self.last = time.monotonic()
                maintenance.sweep_runs()
                self.count += 1
            time.sleep(1)


def broker_store() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def bench_ten_thousand_imports_overdue_at_once(processes):
    ids = owners_and_imports(OWNERS, IMPORTS)
    hour_ago = database_clock.now() - timedelta(hours=1)
    ScheduledImport.objects.filter(pk__in=ids).update(next_run_at=hour_ago)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)

    with smtp_server() as (email_url, mailbox):
        # A worker delivering the notices as the task queues them, as the cluster's would.
        processes.start(
            "worker", EMAIL_URL=email_url, EMAIL_DIGEST_SECONDS=str(DIGEST_SECONDS),
            DJANGO_DEBUG="0", DJANGO_SECRET_KEY=settings.SECRET_KEY,
        )  # fmt: skip
        wait_for(
            lambda: current_app.control.ping(timeout=0.5), 60, what="worker\n" + processes.logs()
        )

        # The task, in this process (the worker's body of it), on the real database and broker.
        task = tasks.start_overdue_late_streaks
        # Django keeps the last 9,000 statements only: a longer task would read as none.
        connection.queries_log = deque(maxlen=1_000_000)
        with CaptureQueriesContext(connection) as queries:
            started = time.monotonic()
            turned_late = task()
            took = time.monotonic() - started
        shapes = Counter(shape(query["sql"]) for query in queries.captured_queries)
        seconds: dict[str, float] = defaultdict(float)
        for query in queries.captured_queries:
            seconds[shape(query["sql"])] += float(query["time"])
        report("start_overdue_late_streaks", imports=IMPORTS, owners=OWNERS,
               turned_late=len(turned_late), seconds=round(took, 1),
               soft_time_limit=task.soft_time_limit, time_limit=task.time_limit,
               statements=len(queries), per_import=round(len(queries) / IMPORTS, 1),
               statements_s=round(sum(seconds.values()), 1),
               messages_left_on_the_broker=broker.llen(QUEUE),
               late_notices=late(ids, *NotificationDelivery.Status.values),
               e_mails_meanwhile=len(mailbox.received()))  # fmt: skip
        for what, count in shapes.most_common():
            print(f"    {what:45s} x{count:6d}  {seconds[what]:6.2f} s")

        # Their e-mails, the sweep passing every MAINTENANCE_INTERVAL_SECONDS as beat has it.
        sweeps = Sweeps()
        sweeps.wait(lambda: late(ids, "held", "delivered") == IMPORTS, processes)
        held_in = time.monotonic() - started
        first_emails = len(mailbox.received())
        sweeps_then = sweeps.count
        sweeps.wait(lambda: late(ids, "delivered") == IMPORTS, processes)
        all_in = time.monotonic() - started
        time.sleep(2)
        messages = mailbox.received()
    per_owner = Counter(message["To"] for message in messages)
    subjects = Counter(re.sub(r"\d+", "N", message["Subject"]) for message in messages)
    report("late e-mails (from the task's start)", notices=IMPORTS,
           all_held_or_sent_s=round(held_in, 1), e_mails_by_then=first_emails,
           sweeps_by_then=sweeps_then, sweeps=sweeps.count,
           most_parked_in_the_mail_line=sweeps.most_parked,
           all_delivered_s=round(all_in, 1), digest_interval_s=DIGEST_SECONDS,
           e_mails=len(messages), owners_e_mailed=len(per_owner),
           per_owner_max=max(per_owner.values()), per_owner_min=min(per_owner.values()),
           per_owner_median=statistics.median(per_owner.values()))  # fmt: skip
    for subject, count in subjects.most_common(5):
        print(f"    {count:6d} x {subject}")
