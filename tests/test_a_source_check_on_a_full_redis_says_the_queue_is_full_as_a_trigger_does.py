"""A check of a source refused by a full Redis says the task queue is full, as a trigger does.

With Redis at its maxmemory (evicting nothing), a trigger answered 503 "The task queue is full
and takes no new run, …", and a check of a source (`POST /imports/check`, `?dry_run=true`, the
admin's Test source) "the task queue is unavailable; try again": one cause in two words.
"""

from __future__ import annotations

import kombu.exceptions
import pytest
import redis.exceptions

from schedules import services, source_check, unsaved_checks
from schedules.api import views
from tests.factories import make_import

pytestmark = pytest.mark.django_db

FULL_QUEUE = "the task queue is full"


def oom() -> redis.exceptions.OutOfMemoryError:
    return redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")


class FullBroker:
    def send_task(self, *args, **kwargs):
        try:
            raise oom()
        except redis.exceptions.OutOfMemoryError as error:
            raise kombu.exceptions.OperationalError(str(error)) from error


def refuse(*args, **kwargs):
    raise oom()


def test_a_source_check_on_a_full_redis_says_the_queue_is_full_as_a_trigger_does(
    alice, monkeypatch
):
    imp = make_import(alice, "https://example.com/p.csv")
    # Given a trigger refused by a full Redis
    trigger = views.queued_run(
        lambda: (_ for _ in ()).throw(services.BrokerUnavailable("full", full=True))
    )
    assert trigger.status_code == 503
    assert trigger.data["detail"].lower().startswith(FULL_QUEUE), trigger.data

    # When a check of an unsaved import meets the same full Redis (its fields kept there)
    monkeypatch.setattr(unsaved_checks, "put", refuse)
    unsaved = source_check.check_unsaved(imp, by=alice.pk)
    # ... and a check of a saved one (its message refused by the broker)
    monkeypatch.setattr(source_check, "current_app", FullBroker())
    saved = source_check.check_source(imp, by=alice.pk)

    # Then each says the queue is full, in the trigger's words
    for answer in (unsaved, saved):
        assert answer.ok is False
        assert len(answer.problems) == 1 and answer.problems[0].startswith(FULL_QUEUE), answer
