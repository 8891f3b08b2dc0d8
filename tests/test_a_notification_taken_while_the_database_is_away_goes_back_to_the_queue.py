"""A notification's message reaches a worker while the database refuses
connections for a few seconds (`ALLOW_CONNECTIONS false` on this test's database, its
sessions ended). SPEC 4: a worker that cannot reach the database "never swallows a message".
A run's message is handed back to the queue (tasks.runner.database_or_requeue); a
notification's must be too, and the webhook go out once the database is back, not after the
sweep's STALE_QUEUED_SECONDS (30 minutes).

Regression (database hunt): the task failed on psycopg's OperationalError (its class, the
socket and the database's name in Flower), its message acknowledged and gone, the notification
`pending` until the sweep sent it again half an hour later."""

import time

import pytest
from celery import current_app

from schedules import notifications
from schedules.models import ImportRun, NotificationDelivery
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, refuse_connections
from tests.webhook_support import Hook

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_notification_taken_while_the_database_is_away_is_sent_once_it_is_back(
    alice, csv_server, processes, outage
):
    receiver = Hook()
    hook = receiver.url
    imp = make_import(
        alice, csv_server.serve("/p.csv", PRODUCTS_CSV), callback_url=hook,
        notify_on=["failed"], notify_channels=["webhook"],
    )  # fmt: skip
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="manual", status="failed", error_message="boom"
    )
    delivery = NotificationDelivery.objects.create(
        scheduled_import=imp, run=run, event="failed", channel="webhook", target=hook
    )
    processes.start("worker", **FAST)
    wait_for(lambda: "ready" in processes.log_of("worker"), 30, what=processes.logs())

    # When its message comes while the database refuses connections, for 5 s
    outage()
    current_app.send_task(
        notifications.DELIVER, args=[delivery.pk], task_id=notifications.task_id(delivery.pk)
    )
    time.sleep(5)
    refuse_connections(True)
    time.sleep(15)

    # Then it is sent once the database is back
    delivery.refresh_from_db()
    log = processes.log_of("worker")
    print(f"\ndelivery status={delivery.status} attempts={delivery.attempts} {delivery.error} "
          f"hook hits={len(receiver.requests)}")  # fmt: skip
    print("\n".join(line for line in log.splitlines() if "deliver_notification" in line))
    receiver.close()
    assert len(receiver.requests) == 1 and delivery.status == "delivered", log[-3000:]
    assert "the message goes back to the queue" in log, log[-3000:]
