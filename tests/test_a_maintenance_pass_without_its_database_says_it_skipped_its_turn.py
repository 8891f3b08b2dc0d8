"""A maintenance pass (the sweep, reconciliation, retention) that finds importbeat's database
away, or out of connections, says in one WARNING line that it skipped this turn and why; its
task ends SUCCESS in Flower with that result, and the next pass, once the database is back,
does its work. Any other error is still a bug, raised with its traceback.

Regression (clients hunt): each pass failed its task with a library traceback at ERROR in the
worker's log (`Task importbeat.sweep_runs raised unexpected: OperationalError('connection
failed: … remaining connection slots are reserved …')`), and Flower counted a failure every
minute of an outage or of a full server."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from project.celery import app
from schedules.models import ImportRun
from tasks import maintenance
from tasks import tasks as jobs
from tests.conftest import wait_for
from tests.connection_limit_support import LimitedRole, a_limited_role, start_worker_as
from tests.factories import make_import
from tests.reliability import refuse_connections, terminate

JOBS = {
    "importbeat.sweep_runs": "sweep",
    "importbeat.reconcile_ticks": "reconciliation",
    "importbeat.delete_old_runs": "retention",
}


@pytest.fixture
def limited_role() -> Iterator[LimitedRole]:
    yield from a_limited_role()


def database_away(_role: LimitedRole) -> None:
    refuse_connections(False)


def database_out_of_connections(role: LimitedRole) -> None:
    # Its sessions already open would go on, as on a full server: ended, so that the next task
    # asks for a new one.
    role.limit(0)
    role._admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", role.name
    )


def database_back(role: LimitedRole) -> None:
    refuse_connections(True)
    role.limit(-1)


def an_old_run_for_retention(alice) -> ImportRun:
    imp = make_import(alice, "http://127.0.0.1:9/never.csv")
    return ImportRun.objects.create(
        scheduled_import=imp, trigger="schedule", status="succeeded",
        queued_at=timezone.now() - timedelta(days=400),
    )  # fmt: skip


def send_each_job() -> dict[str, str]:
    """Each maintenance job sent as beat sends it; its task id by its name."""
    return {name: app.send_task(name).id for name in JOBS}


def ended_in_the_worker_log(log: str, sent: dict[str, str]) -> dict[str, dict] | None:
    """Each task's state and result as the worker logged its end: the task event Flower shows
    (Flower itself heard the worker's events only up to 90 s after it started, here)."""
    found = {}
    for name, task_id in sent.items():
        for line in log.splitlines():
            if f"{name}[{task_id}] succeeded in " in line:
                found[name] = {"state": "SUCCESS", "result": line.split("s: ", 1)[1]}
            elif f"{name}[{task_id}] raised" in line:
                found[name] = {"state": "FAILURE", "result": None}
    return found if len(found) == len(sent) else None


@pytest.mark.django_db(transaction=True)
@pytest.mark.processes
@pytest.mark.parametrize(
    ("goes_out", "why"),
    [
        (database_away, "cannot reach importbeat's database: "),
        (
            database_out_of_connections,
            "importbeat's database is out of connections: the database user has no free "
            "connection: it is at its CONNECTION LIMIT",
        ),
    ],
    ids=["away", "out_of_connections"],
)
def test_each_maintenance_pass_skips_its_turn_in_a_line_and_the_next_does_its_work(
    alice, processes, outage, limited_role, goes_out, why
):
    # Given a worker that opens a connection per task, and an old run to delete
    old_run = an_old_run_for_retention(alice)
    start_worker_as(processes, limited_role, WORKER_CONCURRENCY="1")

    def ended(sent: dict[str, str]) -> dict[str, dict]:
        return wait_for(
            lambda: ended_in_the_worker_log(processes.log_of("worker"), sent), 60,
            what="the tasks' ends\n" + processes.logs(),
        )  # fmt: skip

    # When the database goes out and beat sends each maintenance job
    goes_out(limited_role)
    tasks = ended(send_each_job())

    # Then each task ends SUCCESS (Flower's state), its result saying it skipped this turn and why
    log = processes.log_of("worker")
    for name, job in JOBS.items():
        assert tasks[name]["state"] == "SUCCESS", (name, tasks[name], log)
        said = ast.literal_eval(tasks[name]["result"])
        assert said["skipped"].startswith(why), (name, said)
        # ... and the worker's log says it in one WARNING line, with when the next pass comes
        [line] = [line for line in log.splitlines() if f"{job} skipped this turn: " in line]
        assert "WARNING" in line and why in line and "the next pass comes in" in line, line
    # ... without a traceback, nor an error
    assert "Traceback" not in log and "raised unexpected" not in log, log

    # And once the database is back, the next passes do their work
    database_back(limited_role)
    tasks = ended(send_each_job())
    for name in JOBS:
        assert tasks[name]["state"] == "SUCCESS", (name, tasks[name])
        assert "skipped" not in ast.literal_eval(tasks[name]["result"]), (name, tasks[name])
    assert not ImportRun.objects.filter(pk=old_run.pk).exists()
    assert "'deleted': 1" in tasks["importbeat.delete_old_runs"]["result"]


@pytest.mark.django_db
def test_a_bug_in_a_maintenance_pass_is_raised_with_its_traceback():
    # Given a pass that meets a bug
    def a_bug():
        raise TypeError("a bug of the sweep's")

    # When it runs, then its error is raised as it was (Celery logs it with its traceback)
    with pytest.raises(TypeError, match="a bug of the sweep's"):
        maintenance.unless_the_database_is_out("sweep", "the next pass comes in 60 s", a_bug)


@pytest.mark.django_db
def test_a_statements_error_on_a_sound_connection_is_not_taken_for_a_database_away():
    # Given a pass whose statement fails on a connection that stays sound (a deadlock)
    def a_deadlock():
        ImportRun.objects.count()
        raise OperationalError("deadlock detected")

    # When it runs, then its error is raised as it was
    with pytest.raises(OperationalError, match="deadlock"):
        maintenance.unless_the_database_is_out("sweep", "the next pass comes in 60 s", a_deadlock)


@pytest.mark.django_db(transaction=True)
def test_a_pass_whose_connection_breaks_midway_says_it_skipped_its_turn(caplog):
    # Given a pass whose session the server ends between two statements (a restart)
    def a_pass_cut_by_a_restart():
        ImportRun.objects.count()
        terminate(connection.connection.info.backend_pid)
        return {"deleted": ImportRun.objects.count()}

    # When it runs
    said = maintenance.unless_the_database_is_out(
        "retention", "the next pass comes in 3600 s", a_pass_cut_by_a_restart
    )

    # Then it says it skipped this turn, in one WARNING line with the library's text
    assert said["skipped"].startswith("cannot reach importbeat's database: "), said
    [record] = [r for r in caplog.records if "skipped this turn" in r.getMessage()]
    assert record.levelname == "WARNING" and record.exc_info is None
    # ... and the next statement of this process works, on a new session
    assert ImportRun.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "task",
    [
        jobs.sweep_runs,
        jobs.reconcile_ticks,
        jobs.delete_old_runs,
        # sent by a worker at each of its looks while no beat ticks (project.beat_watch)
        jobs.start_overdue_late_streaks,
    ],
    ids=lambda task: task.name,
)
def test_each_maintenance_task_whose_session_the_server_ended_skips_its_turn(task):
    # Given a worker process whose session the server ended (a restart)
    ImportRun.objects.count()
    terminate(connection.connection.info.backend_pid)

    # When the task runs, then it says it skipped this turn, and why
    said = task()
    assert said["skipped"].startswith("cannot reach importbeat's database: "), said
    assert "the next pass comes" in said["skipped"], said
