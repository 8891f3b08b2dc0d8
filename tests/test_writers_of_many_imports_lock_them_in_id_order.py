"""Every writer of many imports' rows locks them in id order first (schedules.import_locks).

Regression (a deadlock the last notes left possible): the overdue task's UPDATE of every
overdue import, reconciliation's note of the imports it checked and retention's note of the
ticks it deleted locked their rows in the order their plans read them, while the late streak's
telling (notifications.on_imports_late) locks them in id order. Two such writers each held a
row the other waited for, and PostgreSQL ended one of them, its work lost until its next pass.
Here the writer meets an import locked by another session: it waits for it without holding an
import of a higher id, so that the other session can take that one too.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from schedules import overdue, reconcile, services
from schedules.models import ImportRun, ScheduledImport
from tests.api_support import SOURCE
from tests.factories import make_import
from tests.reliability import wait_until_a_session_waits_for_a_lock

pytestmark = pytest.mark.django_db(transaction=True)


def _mark_reconciled(first: ScheduledImport, second: ScheduledImport) -> None:
    moment = timezone.now()
    reconcile._mark_reconciled({second.pk: moment, first.pk: moment})


def _start_late_streaks(first: ScheduledImport, second: ScheduledImport) -> None:
    overdue.start_late_streaks()


def _delete_runs(first: ScheduledImport, second: ScheduledImport) -> None:
    services.delete_runs(ImportRun.objects.filter(scheduled_import__in=[second, first]))


@pytest.mark.parametrize(
    "writer",
    [_mark_reconciled, _start_late_streaks, _delete_runs],
    ids=["reconciliation", "the overdue task", "retention"],
)
def test_a_writer_of_many_imports_waits_for_the_lowest_id_holding_no_higher_one(alice, writer):
    # Given two overdue imports with a run of a tick each, the first one written last (its
    # row after the second's in the table, its next tick later)
    long_ago = timezone.now() - timedelta(hours=2)
    first, second = (
        make_import(alice, SOURCE, name=name, dataset=name) for name in ("first", "second")
    )
    for imp, overdue_since in ((second, long_ago), (first, long_ago + timedelta(minutes=30))):
        ImportRun.objects.create(
            scheduled_import=imp, trigger="schedule", scheduled_for=overdue_since,
            status="succeeded", celery_task_id=f"t-{imp.pk}",
        )  # fmt: skip
        ScheduledImport.objects.filter(pk=imp.pk).update(
            next_run_at=overdue_since, reconciled_until=None
        )
    errors: list[BaseException] = []

    def write() -> None:
        try:
            writer(first, second)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    # When another session holds the first import (telling its late streak) as the writer
    # starts, and then asks for the second one
    with transaction.atomic():
        list(ScheduledImport.objects.select_for_update().filter(pk=first.pk))
        other = threading.Thread(target=write)
        other.start()
        wait_until_a_session_waits_for_a_lock()
        assert other.is_alive(), errors
        try:
            with transaction.atomic():
                list(ScheduledImport.objects.select_for_update(nowait=True).filter(pk=second.pk))
            second_was_free = True
        except OperationalError:
            second_was_free = False
    other.join(20)

    # Then the writer held no lock on the second import while it waited for the first (it
    # did: the other session, waiting for it, made a deadlock), and its work is done
    assert second_was_free
    assert not errors, errors
    assert not other.is_alive()
