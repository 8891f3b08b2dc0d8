"""Two callers telling the same late streak at once tell it once (notifications.on_imports_late).

Regression (review of the batch of 500): the batch locked its imports with SELECT ... FOR UPDATE
whose WHERE held NOT EXISTS (the streak's notices). PostgreSQL evaluates that subquery in the
statement's snapshot, taken before the lock wait: a second caller (beat's message beside
reconciliation's look) that waited for the first one's locks did not see the notices the first
made, and made them again, the owner e-mailed twice for one streak. The locks are taken first
now, and the notices looked for in a statement of its own.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from schedules import notifications
from schedules.models import NotificationDelivery, ScheduledImport
from tests.api_support import SOURCE
from tests.factories import make_import
from tests.reliability import wait_until_a_session_waits_for_a_lock

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_callers_at_once_tell_a_late_streak_once(alice):
    # Given an import whose late streak began and nobody told yet
    imp = make_import(alice, SOURCE, name="late", dataset="late")
    ScheduledImport.objects.filter(pk=imp.pk).update(late_since=timezone.now())
    errors: list[BaseException] = []

    def second_caller() -> None:
        try:
            notifications.on_imports_late([imp.pk])
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    # When one caller (reconciliation's look) tells it and, before it commits, another
    # (beat's message) asks too
    with transaction.atomic():
        notifications.on_imports_late([imp.pk])
        other = threading.Thread(target=second_caller)
        other.start()
        wait_until_a_session_waits_for_a_lock()
        assert other.is_alive(), errors
    other.join(20)

    # Then the owner is told once for the streak
    assert not errors, errors
    told = NotificationDelivery.objects.filter(scheduled_import=imp, event="late")
    assert told.count() == 1, list(told.values_list("id", "channel", "created_at"))
