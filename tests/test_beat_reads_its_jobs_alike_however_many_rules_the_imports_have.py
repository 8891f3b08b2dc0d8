"""The leading beat reads django-celery-beat's entries (its maintenance jobs) at its start, at
every move of the library's change row (an edit that makes or leaves a rule, a deletion) and
every five minutes. The library's read built a CASE of one branch per crontab row in Python,
and the imports' entries have a row per rule: over 10,000 imports of distinct rules one read
took 22 to 38 s in beat's loop, and no tick was dispatched meanwhile (churn hunt,
tests/bench/bench_beat_under_edits.py). The read is the same, whatever the imports' rules."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from project.beat import DISPATCH_TASK, ImportScheduler
from project.celery import app

pytestmark = pytest.mark.django_db(transaction=True)


def imports_entries_on_rules_of_their_own(first: int, count: int) -> None:
    """`count` imports' beat entries, each on a crontab row of its own (as sync_periodic_task
    keeps them: one row per distinct rule)."""
    rows = CrontabSchedule.objects.bulk_create(
        [
            CrontabSchedule(minute=str(n % 60), hour=f"0-{n // 60 % 23},{n // 60 % 23 + 1}-23")
            for n in range(first, first + count)
        ]
    )
    PeriodicTask.objects.bulk_create(
        [
            PeriodicTask(name=f"import #{n}", task=DISPATCH_TASK, crontab=row, args=f"[{n}]")
            for n, row in enumerate(rows, start=first)
        ]
    )


def read_of_entries(scheduler: ImportScheduler) -> tuple[int, int, set[str]]:
    """The statements of one read of the entries (how many, their length), and what it read."""
    with CaptureQueriesContext(connection) as queries:
        entries = scheduler.all_as_schedule()
    return len(queries), sum(len(q["sql"]) for q in queries), set(entries)


def test_the_read_of_beats_jobs_does_not_grow_with_the_imports_rules():
    # Given a beat (its maintenance jobs installed) and ten imports on rules of their own
    scheduler = ImportScheduler(app=app)
    try:
        imports_entries_on_rules_of_their_own(0, 10)
        few_statements, few_length, few_read = read_of_entries(scheduler)

        # When 500 more imports each have a rule of their own
        imports_entries_on_rules_of_their_own(10, 500)
        statements, length, read = read_of_entries(scheduler)
    finally:
        scheduler.close()

    # Then the read is the same statements, no longer, and reads the jobs, no import
    assert (statements, length) == (few_statements, few_length)
    assert read == few_read
    assert read and not any(name.startswith("import #") for name in read)
