"""A retry held by a worker that stopped answering (paused, or cut off, and alive after all)
is sent again by reconciliation once it is long overdue; when that worker comes back, its copy
finds the run taken, and the run runs once. The run log never said that its retry was sent
again, nor why (sweepnote hunt): only the worker's log did ("run message lost, sent again").
The failed attempt's entry now says so, in the API's run detail and on the admin's run page.

Real processes: a Procfile worker holds the retry until it is due and is paused (SIGSTOP)
past it; reconciliation runs here, told a moment STALE_QUEUED_SECONDS later; the worker is then
let go on (SIGCONT), and runs both the retry it held and the copy sent again (taken from Redis
while it was paused: its connection was still open), the run once.
"""

import os
import signal
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from project.celery import app
from schedules import reconcile, services
from schedules.models import ImportRun, Record
from tests.api_support import API, client_for
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, pool_children, wait_for_the_end
from tests.test_reconcile_sends_a_lost_retry_again_once import drop_messages, held_copies

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

COUNTDOWN = 3


def test_a_retry_sent_again_while_a_paused_worker_held_it_says_so_on_its_attempt(
    alice, admin_client, csv_server, processes
):
    # Given alice's run whose first attempt failed, its retry held by a worker until it is due
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    imp = make_import(alice, url, max_retries=3)
    due = timezone.now() + timedelta(seconds=COUNTDOWN)
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger=ImportRun.Trigger.MANUAL, triggered_by=alice,
        status=ImportRun.Status.RETRYING, attempts=1, heartbeat_at=due,
        celery_task_id=str(uuid.uuid4()),
        error_message=f"attempt 1 failed, retrying in {COUNTDOWN}s: the server answered HTTP 503",
        error_details={"attempts": [{
            "attempt": 1, "error": "the server answered HTTP 503",
            "at": timezone.now().isoformat(), "retry_in": COUNTDOWN,
        }]},
    )  # fmt: skip
    first = processes.start("worker", **FAST)
    wait_for(lambda: pool_children(first), 30, what="the worker's pool")
    args, kwargs, _ = services.run_message(run)
    app.send_task(
        services.EXECUTE_RUN, args=args, kwargs=kwargs, task_id=run.celery_task_id,
        countdown=COUNTDOWN,
    )  # fmt: skip
    try:
        wait_for(
            lambda: held_copies(run.celery_task_id) == 1,
            30,
            what="the worker to take the retry\n" + processes.logs(),
        )

        # When that worker stops answering, and reconciliation finds the retry long overdue
        os.killpg(first.pid, signal.SIGSTOP)
        try:
            overdue = timedelta(seconds=COUNTDOWN + settings.STALE_QUEUED_SECONDS + 60)
            assert reconcile.reconcile(now=timezone.now() + overdue)["resent"] == 1
        finally:
            # ... and then the worker answers again, with the retry it held and the copy
            os.killpg(first.pid, signal.SIGCONT)
        ended = wait_for_the_end(run, processes)
        done = f"execute_run[{run.celery_task_id}] succeeded"
        wait_for(
            lambda: processes.log_of("worker").count(done) == 2,
            60,
            what="both copies to end\n" + processes.logs(),
        )
    finally:
        drop_messages(run.celery_task_id)

    # Then the run ran once
    ended.refresh_from_db()
    assert (ended.status, ended.attempts) == ("succeeded", 2)
    assert csv_server.hits["/p.csv"] == 1
    assert Record.objects.filter(dataset=imp.dataset).count() == ended.rows_inserted == 3
    # ... and its failed attempt's entry says its retry was sent again, and why
    entry = ended.error_details["attempts"][0]
    print(f"\n[figures] failed attempt's entry: {entry}")
    assert entry["retry_sent_again"].startswith(
        "its retry was sent again by reconciliation: it had not run "
    )
    assert entry["retry_sent_again"].endswith("only one of the copies runs it")
    # ... shown to its owner by the API, and on the admin's run page
    shown = client_for(alice).get(f"{API}/runs/{run.pk}/").json()
    assert shown["error_details"]["attempts"][0]["retry_sent_again"] == entry["retry_sent_again"]
    page = admin_client.get(reverse("admin:schedules_importrun_change", args=[run.pk]))
    assert escape(entry["retry_sent_again"]) in page.content.decode()
