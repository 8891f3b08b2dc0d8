"""Imports saved onto a schedule at the moment another import moves off it all save, and no one
waits for another: the row the third leaves is deleted only if no save is picking it.

Regression (growth hunt): the row an import left was never deleted (it piled up, unused, in
the beat admin's forms). Deleted as soon as no committed entry used it, it was deleted under a
save that had just picked it and not committed yet: that save's entry failed at its commit (the
foreign key is checked then), a 500 to its owner.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from schedules import services
from schedules.models import ScheduledImport
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 15  # seconds: far past what a save takes, so a join that times out was a wait


def cron(rule: str) -> dict[str, str | None]:
    return {"schedule_type": "cron", "cron_expression": rule, "interval_seconds": None}


def unused_crontabs() -> list[str]:
    used = PeriodicTask.objects.filter(crontab=OuterRef("pk"))
    return [str(row) for row in CrontabSchedule.objects.filter(~Exists(used))]


def save(imp: ScheduledImport, rule: str, errors: list[str], held: threading.Event | None = None,
         release: threading.Event | None = None) -> threading.Thread:  # fmt: skip
    """Reschedule `imp` to `rule` in a thread of its own (its own connection, as a request);
    with `held`, it says so once saved and commits only at `release`."""

    def run() -> None:
        try:
            with transaction.atomic():
                services.update_import(ScheduledImport.objects.get(pk=imp.pk), **cron(rule))
                if held is not None and release is not None:
                    held.set()
                    release.wait(WAIT)
        except Exception as error:  # what its owner would have met: a 500
            errors.append(repr(error))
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def rule_of(imp: ScheduledImport) -> str:
    row = ScheduledImport.objects.get(pk=imp.pk).periodic_task.crontab
    return f"{row.minute} {row.hour} {row.day_of_month} {row.month_of_year} {row.day_of_week}"


def test_imports_saved_onto_a_schedule_as_another_leaves_it_all_save(alice):
    # Given a third import alone on 07:07, and two imports on schedules of their own
    third = make_import(alice, SOURCE, name="third", dataset="c", **cron("7 7 * * *"))
    first = make_import(alice, SOURCE, name="first", dataset="a", **cron("1 1 * * *"))
    second = make_import(alice, SOURCE, name="second", dataset="b", **cron("2 2 * * *"))
    errors: list[str] = []

    # When the two are saved onto 07:07 at once, not committed yet, as the third moves off it
    release = threading.Event()
    held = [threading.Event(), threading.Event()]
    savers = [
        save(imp, "7 7 * * *", errors, picked, release)
        for imp, picked in zip((first, second), held, strict=True)
    ]
    assert all(picked.wait(WAIT) for picked in held), errors
    mover = save(third, "8 8 * * *", errors)
    mover.join(WAIT)
    moved_without_a_wait = not mover.is_alive()
    release.set()
    for thread in (*savers, mover):
        thread.join(WAIT)

    # Then all three saved, none waited for another, and the rows left are gone
    assert errors == [] and moved_without_a_wait
    assert [rule_of(imp) for imp in (first, second, third)] == [
        "7 7 * * *", "7 7 * * *", "8 8 * * *"
    ]  # fmt: skip
    assert unused_crontabs() == []


def test_imports_saved_onto_a_schedule_another_is_leaving_all_save(alice):
    # Given a third import alone on 07:07, and two imports on schedules of their own
    third = make_import(alice, SOURCE, name="third", dataset="c", **cron("7 7 * * *"))
    first = make_import(alice, SOURCE, name="first", dataset="a", **cron("1 1 * * *"))
    second = make_import(alice, SOURCE, name="second", dataset="b", **cron("2 2 * * *"))
    errors: list[str] = []

    # When the third has moved off 07:07, not committed yet, as the two are saved onto it
    release, moved = threading.Event(), threading.Event()
    mover = save(third, "8 8 * * *", errors, moved, release)
    assert moved.wait(WAIT), errors
    savers = [save(imp, "7 7 * * *", errors) for imp in (first, second)]
    for thread in savers:
        thread.join(WAIT)
    saved_without_a_wait = not any(thread.is_alive() for thread in savers)
    release.set()
    for thread in (*savers, mover):
        thread.join(WAIT)

    # Then all three saved, none waited for another, and the rows left are gone
    assert errors == [] and saved_without_a_wait
    assert [rule_of(imp) for imp in (first, second, third)] == [
        "7 7 * * *", "7 7 * * *", "8 8 * * *"
    ]  # fmt: skip
    assert unused_crontabs() == []
