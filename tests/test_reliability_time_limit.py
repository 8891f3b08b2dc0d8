"""A run that takes longer than its import's timeout_seconds is stopped and ends `timed_out`."""

import pytest

from schedules import services
from schedules.models import ImportRun, ScheduledImport
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, big_csv

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_run_over_its_timeout_ends_timed_out_and_counts_as_a_failure(
    alice, csv_server, processes
):
    # Given an import with a 2 s timeout and a file that takes ~6 s to download
    url = csv_server.serve("/slow.csv", big_csv(20_000), chunk_delay=0.8)
    imp = make_import(alice, url, timeout_seconds=2)
    processes.start("worker", **FAST)

    run = services.enqueue_run(imp, trigger="manual", user=alice)

    run = wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, status__in=ImportRun.FINAL_STATUSES).first(),
        30,
        what="the run to end\n" + processes.logs(),
    )
    print(f"\n[figures] time limit: status={run.status} duration_ms={run.duration_ms}")
    assert run.status == "timed_out"
    assert "exceeded its 2s time limit" in run.error_message
    # The limit counts from the task's start, a moment before the run's started_at.
    assert 1500 <= run.duration_ms < 10_000
    imp = ScheduledImport.objects.get(pk=imp.pk)
    assert (imp.failed_runs, imp.consecutive_failures) == (1, 1)


def test_a_run_says_the_time_limit_it_ran_under_when_its_import_changed_it_since(
    alice, csv_server, processes
):
    # Given a run queued under a 2 s timeout, which its import then raises to 600 s before a
    # worker takes it (the run keeps the limit of its message)
    url = csv_server.serve("/slow.csv", big_csv(20_000), chunk_delay=0.8)
    imp = make_import(alice, url, timeout_seconds=2)
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    ScheduledImport.objects.filter(pk=imp.pk).update(timeout_seconds=600)
    processes.start("worker", **FAST)

    run = wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, status__in=ImportRun.FINAL_STATUSES).first(),
        30,
        what="the run to end\n" + processes.logs(),
    )

    # Then it says the limit it was stopped at: it said 600 s of a run stopped after 2
    assert run.status == "timed_out"
    assert run.error_message == (
        "the run exceeded its 2s time limit (set when it was queued; the import's is now 600s)"
    )


def test_a_run_timed_out_while_its_merge_waits_leaves_no_statement_running(
    alice, csv_server, processes
):
    # Given another merge into the dataset holding its lock (another connection here), and an
    # import with a 3 s timeout
    import time

    import psycopg
    from django.db import connection

    processes.start("worker", WORKER_CONCURRENCY="1")
    imp = make_import(
        alice, csv_server.serve("/p.csv", PRODUCTS_CSV), timeout_seconds=3, max_retries=0
    )
    params = connection.get_connection_params()
    other = {"dbname": connection.settings_dict["NAME"], "user": params.get("user"),
             "host": params.get("host"), "port": params.get("port") or None}  # fmt: skip
    with psycopg.connect(**other) as locker:
        locker.execute(
            "SELECT id FROM schedules_dataset WHERE id = %s FOR UPDATE", [imp.dataset_id]
        )

        # When its run times out waiting for that lock
        run = services.enqueue_run(imp, trigger="manual", user=alice)
        run = wait_for(
            lambda: ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(),
            60,
            what="the run to end\n" + processes.logs(),
        )
        assert run.status == "timed_out"
        time.sleep(5)  # (PostgreSQL looks every 2 s)

        # Then its statement no longer waits in PostgreSQL: it did, up to the sessions' 6 h
        # statement timeout, and then took the lock
        with psycopg.connect(**other) as looking:
            waiting = looking.execute(
                "SELECT left(query, 80) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state = 'active' AND pid NOT IN (pg_backend_pid(), %s)",
                [locker.info.backend_pid],
            ).fetchall()
        locker.rollback()
    assert waiting == []
