"""A run someone asked for (the API, the admin, a retry) is announced with Celery's
`task-sent` event as its message goes out, so that Flower lists it before a worker takes it;
beat's runs go without (thousands a tick: a worker's `task-received` says the same a moment
later). Both are sent by one builder (services.send_runs), which `send_task` no longer is for
a trigger: its option resolution and its subscription to a result nobody reads cost a fifth
of a trigger's CPU."""

import threading
import time
import uuid

import pytest
from celery import current_app
from django.utils import timezone

from schedules import dispatch, services
from schedules.models import ImportRun
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)


def sent_events_while(action, settle: float = 1.5) -> list[dict]:
    """The `task-sent` events on the broker while `action` runs and `settle` seconds after,
    seen by a real event receiver, as Flower's."""
    seen: list[dict] = []
    ready = threading.Event()
    with current_app.connection_for_read() as connection:
        receiver = current_app.events.Receiver(connection, handlers={"task-sent": seen.append})
        receiver.on_consume_ready = lambda *args, **kwargs: ready.set()
        listening = threading.Thread(target=receiver.capture, kwargs={"wakeup": False}, daemon=True)
        listening.start()
        assert ready.wait(10), "the event receiver did not start"
        time.sleep(0.5)  # its first poll subscribes it to the events' channel
        action()
        time.sleep(settle)
        receiver.should_stop = True
        listening.join(10)
    return seen


def test_a_trigger_announces_its_task_and_beats_runs_do_not(alice):
    triggered = make_import(alice, "http://127.0.0.1:9/a.csv", name="asked")
    scheduled = make_import(alice, "http://127.0.0.1:9/b.csv", name="ticked", dataset="ticked")
    tick = ImportRun.objects.create(
        scheduled_import=scheduled, trigger="schedule", scheduled_for=timezone.now(),
        celery_task_id=str(uuid.uuid4()),
    )  # fmt: skip
    runs: list[ImportRun] = []

    events = sent_events_while(
        lambda: (
            runs.append(services.enqueue_run(triggered, trigger="api", user=alice)),
            dispatch.publish_runs([tick]),
        )
    )

    announced = {event["uuid"]: event for event in events}
    assert runs[0].celery_task_id in announced
    assert announced[runs[0].celery_task_id]["name"] == services.EXECUTE_RUN
    assert tick.celery_task_id not in announced
