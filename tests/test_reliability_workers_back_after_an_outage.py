"""No worker across several ticks while beat kept dispatching, then a worker: each import runs
once for the ticks that waited. Beat skips a tick whose import's earlier run still waits for a
worker, at once and without a message (schedules.dispatch), and a worker skips a tick that waited
past the grace period when a later run took the file since (schedules.backlog). Before, every
waiting tick ran in turn: after an outage of two hours, an import on a one-minute schedule loaded
its file 120 times, and a cluster with many such imports had a queue it could not drain before
the next ticks came (and a Redis with a memory cap filled up). A manual run is never skipped so.
"""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from schedules import backlog, services
from schedules.models import ImportRun, ScheduledImport
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST

INTERVAL = 2
WAITING_TICKS = 4


def runs_of(imp):
    return list(ImportRun.objects.filter(scheduled_import=imp).order_by("queued_at", "pk"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.processes
def test_after_an_outage_of_the_workers_each_import_runs_once_for_the_ticks_that_waited(
    alice, csv_server, processes
):
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    imports = [
        make_import(alice, url, name=f"every-{n}", dataset=f"d{n}", interval_seconds=INTERVAL)
        for n in range(2)
    ]
    # (paused: its hourly tick came due at the top of an hour, and the trigger below met it)
    other = services.pause_import(make_import(alice, url, name="by-hand", dataset="by-hand"))

    # Given beat dispatching while no worker runs, until each import has ticks waiting past
    # the grace period
    beat = processes.start("beat", **FAST)
    wait_for(
        lambda: all(len(runs_of(imp)) >= WAITING_TICKS for imp in imports),
        60,
        what="ticks waiting for a worker\n" + processes.logs(),
    )
    processes.stop(beat)
    grace = int(FAST["MISSED_TICK_GRACE_SECONDS"])
    time.sleep(grace + 1)
    manual = services.enqueue_run(other, trigger=ImportRun.Trigger.MANUAL, user=alice)
    waited = {imp.pk: runs_of(imp) for imp in imports}

    # When a worker comes back
    processes.start("worker", **FAST)
    wait_for(
        lambda: (
            not ImportRun.objects.filter(
                scheduled_import__in=[*imports, other], status__in=ImportRun.ACTIVE_STATUSES
            ).exists()
        ),
        60,
        what="the waiting runs ended\n" + processes.logs(),
    )

    for imp in imports:
        ended = [ImportRun.objects.get(pk=run.pk) for run in waited[imp.pk]]
        summary = [(r.pk, r.scheduled_for, r.status, r.error_message) for r in ended]
        # Then one of the ticks that waited ran, the first ...
        ran = [r for r in ended if r.status != ImportRun.Status.SKIPPED]
        assert [r.status for r in ran] == [ImportRun.Status.SUCCEEDED], summary
        assert ran[0].pk == ended[0].pk, summary
        # ... and each later one was skipped by beat, naming the run that waited and took the
        # file after its tick
        for run in ended[1:]:
            assert run.status == ImportRun.Status.SKIPPED, summary
            assert run.error_message == (
                f"skipped: run {ran[0].pk} of this import, queued at "
                f"{ran[0].queued_at:%Y-%m-%d %H:%M:%S} UTC, still waits for a worker, and takes "
                "the file after this tick"
            )
            assert ran[0].started_at > run.queued_at
    # ... and the manual run, queued as long, ran
    manual.refresh_from_db()
    assert manual.status == ImportRun.Status.SUCCEEDED


# The rule, run by run (no processes): what skips a tick that waited, and what does not.


def queued_tick(imp, queued_ago: float) -> ImportRun:
    queued = timezone.now() - timedelta(seconds=queued_ago)
    return ImportRun.objects.create(
        scheduled_import=imp, trigger=ImportRun.Trigger.SCHEDULE, scheduled_for=queued,
        queued_at=queued,
    )  # fmt: skip


def finished_run(imp, started_ago: float) -> ImportRun:
    started = timezone.now() - timedelta(seconds=started_ago)
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger=ImportRun.Trigger.MANUAL, queued_at=started,
        started_at=started, finished_at=started + timedelta(seconds=1),
        status=ImportRun.Status.SUCCEEDED,
    )  # fmt: skip
    ScheduledImport.objects.filter(pk=imp.pk).update(last_run_at=run.finished_at)
    return run


def loaded(run: ImportRun) -> ImportRun:
    return services.load_run(run.pk)


@pytest.mark.django_db
def test_a_tick_that_waited_while_a_later_run_took_the_file_is_skipped_and_counted(alice):
    imp = make_import(alice, "https://example.com/p.csv")
    waiting = queued_tick(imp, 3600)
    later = finished_run(imp, 60)

    assert backlog.skip_if_ran_since(loaded(waiting))

    waiting.refresh_from_db()
    imp.refresh_from_db()
    assert waiting.status == ImportRun.Status.SKIPPED
    assert waiting.error_message.startswith("skipped: waited 60 min for a worker (its tick was ")
    assert f"run {later.pk} of this import took the file since" in waiting.error_message
    assert imp.missed_ticks == 1


@pytest.mark.django_db
def test_a_tick_on_time_runs_and_costs_no_query(alice, django_assert_num_queries):
    imp = make_import(alice, "https://example.com/p.csv")
    finished_run(imp, 1)
    run = loaded(queued_tick(imp, 2))
    with django_assert_num_queries(0):
        assert backlog.skip_if_ran_since(run) is None


@pytest.mark.django_db
def test_a_tick_that_came_while_the_last_run_was_running_runs_after_it(alice):
    # overlap: queue. The last run took the file before the tick came: the tick has new work.
    imp = make_import(alice, "https://example.com/p.csv", overlap="queue")
    finished_run(imp, 3600)
    run = queued_tick(imp, 3000)
    ScheduledImport.objects.filter(pk=imp.pk).update(last_run_at=timezone.now())

    assert backlog.skip_if_ran_since(loaded(run)) is None
    run.refresh_from_db()
    assert run.status == ImportRun.Status.QUEUED


@pytest.mark.django_db
def test_a_manual_run_that_waited_is_never_skipped_so(alice):
    imp = make_import(alice, "https://example.com/p.csv")
    manual = queued_tick(imp, 3600)
    ImportRun.objects.filter(pk=manual.pk).update(
        trigger=ImportRun.Trigger.MANUAL, scheduled_for=None
    )
    finished_run(imp, 60)

    assert backlog.skip_if_ran_since(loaded(manual)) is None
