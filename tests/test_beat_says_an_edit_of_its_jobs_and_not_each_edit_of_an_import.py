"""Beat's log says what beat runs when an operator edits one of its jobs in the admin, and
nothing at an import's edit. django-celery-beat said "DatabaseScheduler: Schedule changed." at
INFO at each read of its entries after a move of its change row, and every import edit that
makes or leaves a rule moves it: 24 to 28 lines in two minutes at 10 edits a second (churn
hunt: an import's deletion moves it), none saying what changed, while an edit of a job itself
said no more than they did."""

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from common.redis_client import LAST_TICK_KEY, client
from schedules import services
from tests.conftest import wait_for
from tests.factories import make_import

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

RETENTION = "importbeat:maintenance:retention"


def a_whole_loop_of_beat(processes) -> None:
    """Wait until beat has begun a loop after now and ended it: its last tick stamped twice.
    The loop of the first stamp reads the change row after it, the second says it is done."""
    seen = [client().get(LAST_TICK_KEY)]

    def stamped_twice() -> bool:
        stamp = client().get(LAST_TICK_KEY)
        if stamp != seen[-1]:
            seen.append(stamp)
        return len(seen) > 2

    wait_for(stamped_twice, 30, what="two loops of beat\n" + processes.logs())


def test_an_admin_edit_of_a_job_is_said_and_an_imports_edit_is_not(alice, processes):
    # Given a leading beat and imports on rules of their own
    imports = [
        make_import(alice, "http://127.0.0.1/p.csv", name=f"i{n}", schedule_type="cron",
                    cron_expression=f"{n} {n} * * *")
        for n in range(1, 4)
    ]  # fmt: skip
    processes.start("beat")
    wait_for(
        lambda: "became the leader" in processes.log_of("beat"), 60,
        what="a leading beat\n" + processes.logs(),
    )  # fmt: skip

    # When they are rescheduled (each edit makes a rule and leaves one) and deleted (which
    # moves django-celery-beat's change row), beat going round its loop after each
    for n, imp in enumerate(imports, start=10):
        services.update_import(imp, cron_expression=f"{n} {n} * * *")
        a_whole_loop_of_beat(processes)
        services.delete_import(imp)
        a_whole_loop_of_beat(processes)

    # ... and an operator reschedules the retention job in the admin
    job = PeriodicTask.objects.get(name=RETENTION)
    job.interval, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    job.save()

    # Then beat says what it runs now, and runs it so
    wait_for(
        lambda: f"Sending due task {RETENTION}" in processes.log_of("beat"), 30,
        what="the job sent on its new schedule\n" + processes.logs(),
    )  # fmt: skip
    log = processes.log_of("beat")
    said = [line for line in log.splitlines() if "beat runs its job" in line]
    assert len(said) == 1, log
    assert f"beat runs its job {RETENTION} every 1 seconds now (was every 3600 seconds)" in said[0]
    assert " INFO " in said[0] or "INFO/" in said[0]
    # ... and nothing at the imports' edits
    assert "Schedule changed" not in log
