"""One owner cannot take every worker slot: at most MAX_RUNNING_PER_OWNER of their runs execute
at once; the others wait their turn, visibly, and are not failed (issue 11, point 3).

Regression: two slow imports of one user held both slots of a worker and delayed another
user's run by a minute.
"""

import pytest
from celery.exceptions import Retry

from schedules import services
from schedules.models import ImportRun
from tasks import runner
from tests.bound_task import BoundTask as FakeTask
from tests.bound_task import Retried as FakeRetry
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, big_csv


def queued_run(imp) -> ImportRun:
    return ImportRun.objects.create(scheduled_import=imp, trigger=ImportRun.Trigger.MANUAL)


@pytest.mark.django_db
def test_a_run_over_the_owners_cap_waits_queued_with_a_note_and_runs_later(
    alice, bob, csv_server, settings
):
    # Given alice at her cap of 2: two of her imports are running
    settings.MAX_RUNNING_PER_OWNER = 2
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    busy = [queued_run(make_import(alice, url, name=f"busy {i}", dataset=f"d{i}")) for i in (1, 2)]
    ImportRun.objects.filter(pk__in=[r.pk for r in busy]).update(status="running")
    third = queued_run(make_import(alice, url, name="third", dataset="third"))
    bobs = queued_run(make_import(bob, url, name="bob's", dataset="bobs"))

    # When a worker takes alice's third run, it is parked in her line, not failed, nor sent
    # back to the queue (tasks.fairness)
    task = FakeTask()
    with pytest.raises(Retry):
        runner.execute(third.pk, task=task)
    third.refresh_from_db()
    assert third.status == "queued" and third.attempts == 0
    assert "2 runs of this owner running, at most 2 at once (MAX_RUNNING_PER_OWNER)" in (
        third.error_message
    )
    assert task.countdowns == []

    # And bob's run is not held back by alice's
    runner.execute(bobs.pk, task=FakeTask())
    assert ImportRun.objects.get(pk=bobs.pk).status == "succeeded"

    # When one of alice's runs ends, her third run starts at its next delivery
    ImportRun.objects.filter(pk=busy[0].pk).update(status="succeeded")
    runner.execute(third.pk, task=FakeTask())
    third.refresh_from_db()
    assert third.status == "succeeded" and third.error_message == ""


@pytest.mark.django_db
def test_a_run_that_finds_its_import_busy_holds_no_slot_of_its_owner(alice, csv_server, settings):
    # Given alice's cap of 1, and an import of hers whose first run waits for its retry while
    # its next tick (overlap: queue) comes to a worker
    settings.MAX_RUNNING_PER_OWNER = 1
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    failing = make_import(alice, url, name="failing", dataset="f", overlap="queue")
    retrying = queued_run(failing)
    ImportRun.objects.filter(pk=retrying.pk).update(status="retrying", attempts=1)
    tick = ImportRun.objects.create(scheduled_import=failing, trigger="schedule")
    with pytest.raises(FakeRetry):
        runner.execute(tick.pk, task=FakeTask())
    tick.refresh_from_db()
    assert tick.status == "queued"

    # When another import of hers runs, it starts: the tick that waits for its own import took
    # her one slot (admitted, then its claim found the import busy), and at each look again,
    # so a second such tick stopped all her imports until their timeouts passed
    good = queued_run(make_import(alice, url, name="good", dataset="g"))
    runner.execute(good.pk, task=FakeTask())
    assert ImportRun.objects.get(pk=good.pk).status == "succeeded"
    # ... and so does the retry of the first run, once due
    runner.execute(retrying.pk, task=FakeTask())
    assert ImportRun.objects.get(pk=retrying.pk).status == "succeeded"


@pytest.mark.django_db
def test_run_import_in_the_foreground_is_not_capped(alice, csv_server, settings):
    # An operator's `run_import` takes no worker slot
    settings.MAX_RUNNING_PER_OWNER = 1
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    running = queued_run(make_import(alice, url, name="busy", dataset="busy"))
    ImportRun.objects.filter(pk=running.pk).update(status="running")
    run = queued_run(make_import(alice, url, name="now", dataset="now"))

    runner.execute(run.pk)

    assert ImportRun.objects.get(pk=run.pk).status == "succeeded"


@pytest.mark.django_db(transaction=True)
@pytest.mark.processes
def test_two_slow_imports_of_one_user_leave_a_slot_for_another_user(
    alice, bob, csv_server, processes
):
    # Given a worker with 2 slots, a cap of 1, and two slow imports of alice
    slow = csv_server.serve("/slow.csv", big_csv(20_000), chunk_delay=0.5)
    alices = [make_import(alice, slow, name=f"slow {i}", dataset=f"s{i}") for i in (1, 2)]
    bobs = make_import(bob, csv_server.serve("/quick.csv", PRODUCTS_CSV), name="quick")
    processes.start("worker", **{**FAST, "WORKER_CONCURRENCY": "2", "MAX_RUNNING_PER_OWNER": "1"})

    # When alice starts both and bob then starts his
    first, second = (services.enqueue_run(imp, trigger="manual", user=alice) for imp in alices)
    wait_for(
        lambda: ImportRun.objects.filter(pk__in=[first.pk, second.pk], status="running").exists(),
        30,
        what="alice's first run to start\n" + processes.logs(),
    )
    quick = services.enqueue_run(bobs, trigger="manual", user=bob)

    # Then bob's run finishes while alice's first is still going, her second waits visibly
    quick = wait_for(
        lambda: ImportRun.objects.filter(pk=quick.pk, status="succeeded").first(),
        20,
        what="bob's run\n" + processes.logs(),
    )
    runs = {r.pk: r for r in ImportRun.objects.filter(pk__in=[first.pk, second.pk])}
    assert sorted(r.status for r in runs.values()) == ["queued", "running"]
    waiting = next(r for r in runs.values() if r.status == "queued")
    assert "MAX_RUNNING_PER_OWNER" in waiting.error_message

    # And both of alice's runs end well, one after the other
    def both_done() -> list[ImportRun] | None:
        done = list(ImportRun.objects.filter(pk__in=runs, status__in=ImportRun.FINAL_STATUSES))
        return done if len(done) == 2 else None

    done = wait_for(
        both_done,
        90,
        what="alice's runs to end\n" + processes.logs(),
    )
    assert {r.status for r in done} == {"succeeded"}
    earlier, later = sorted(done, key=lambda r: r.started_at)
    assert later.started_at >= earlier.finished_at
