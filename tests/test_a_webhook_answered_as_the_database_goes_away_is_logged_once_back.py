"""The database goes away for a few seconds just after a webhook was answered 200
and before its delivery is logged (`notifications.delivered`). The webhook went out; the log
must say `delivered` once the database is back (a run's outcome is retried on a fresh
connection for ~16 s for this), not stay `pending` for the sweep to send it a second time 30
minutes later, nor fail its task in psycopg's words.

Regression (database hunt): it stayed `pending`, its task failed on psycopg's OperationalError,
and the sweep sent the same webhook again half an hour later."""

import threading
import time

import pytest
from celery import current_app
from django.db import connection

from schedules import notifications
from schedules.models import ImportRun, NotificationDelivery
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, refuse_connections
from tests.webhook_support import Hook

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_webhook_answered_while_the_database_goes_away_is_logged_delivered_once(
    alice, csv_server, processes
):
    own = connection.cursor().connection.info.backend_pid
    outage = threading.Event()

    def database_away_after_the_answer(_sent: int) -> None:
        if not outage.is_set():
            outage.set()
            refuse_connections(False, own)
            threading.Timer(4, lambda: refuse_connections(True, own)).start()

    # (called before the answer goes: the database is away when the worker reads it)
    receiver = Hook(on_post=database_away_after_the_answer)
    hook = receiver.url
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), callback_url=hook)
    failed = ImportRun.objects.create(
        scheduled_import=imp, trigger="manual", status="failed", error_message="it failed"
    )
    delivery = NotificationDelivery.objects.create(
        scheduled_import=imp,
        run=failed,
        event=notifications.ALERT,
        channel="webhook",
        target=hook,
    )
    processes.start("worker", **FAST)
    wait_for(lambda: "ready" in processes.log_of("worker"), 30, what=processes.logs())
    try:
        current_app.send_task(
            notifications.DELIVER, args=[delivery.pk], task_id=notifications.task_id(delivery.pk)
        )
        wait_for(outage.is_set, 30, what="the webhook")
        time.sleep(25)
    finally:
        refuse_connections(True, own)
    delivery.refresh_from_db()
    log = processes.log_of("worker")
    print(f"\ndelivery status={delivery.status} attempts={delivery.attempts} "
          f"hook hits={len(receiver.requests)}")  # fmt: skip
    print("\n".join(line for line in log.splitlines() if "deliver_notification[" in line))
    assert len(receiver.requests) == 1
    assert delivery.status == "delivered", delivery.status
