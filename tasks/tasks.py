"""Celery tasks: thin wrappers that take ids and hand over to schedules.services and the runner."""

from celery import shared_task

from schedules import services

from . import runner


@shared_task(name="importbeat.dispatch_scheduled_import", ignore_result=True)
def dispatch_scheduled_import(import_id: int, scheduled_for: str | None = None) -> None:
    """Beat's entry point: one tick of one import becomes at most one queued run."""
    services.dispatch_scheduled_tick(import_id, scheduled_for)


@shared_task(
    bind=True,
    name="importbeat.execute_run",
    # Acknowledge only when the run ended, and give it back if the worker process died, so a
    # crash mid-import leads to a redelivery rather than a lost run.
    acks_late=True,
    reject_on_worker_lost=True,
)
def execute_run(self, run_id: int) -> dict | None:
    return runner.execute(run_id, self)
