"""Execute one run: claim it, import, and record the outcome; retry what is transient."""

from __future__ import annotations

import logging
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval

from schedules import services
from schedules.models import ImportRun

from . import importer
from .errors import PermanentImportError, TransientImportError

logger = logging.getLogger("importbeat.runs")


def backoff_seconds(run: ImportRun) -> float:
    """base * 2^n with full jitter, capped: Celery's own formula, the import's numbers."""
    imp = run.scheduled_import
    return get_exponential_backoff_interval(
        factor=imp.retry_backoff_seconds,
        retries=max(run.attempts - 1, 0),
        maximum=imp.retry_backoff_max_seconds,
        full_jitter=True,
    )


def execute(run_id: int, task: Any | None = None) -> dict[str, Any] | None:
    """Run `run_id` in this process. `task` is the bound Celery task, or None in the foreground."""
    run = ImportRun.objects.select_related("scheduled_import").filter(pk=run_id).first()
    if run is None:
        return None
    task_id = task.request.id if task is not None else ""
    if not services.claim_run(run, task_id=task_id or ""):
        logger.info("run not claimable run=%s status=%s", run.pk, run.status)
        return None

    def progress(state: dict[str, int | None]) -> None:
        if task is not None and task.request.id:
            task.update_state(state="PROGRESS", meta={"run_id": run.pk, **state})

    try:
        counts = importer.import_run(run, progress=progress)
    except SoftTimeLimitExceeded:
        services.finish_run(
            run,
            ImportRun.Status.TIMED_OUT,
            error=f"the run exceeded its {run.scheduled_import.timeout_seconds}s time limit",
        )
    except TransientImportError as error:
        if task is not None and run.attempts <= run.scheduled_import.max_retries:
            countdown = backoff_seconds(run)
            services.mark_retrying(run, str(error), countdown)
            raise task.retry(countdown=countdown, max_retries=None, exc=error) from error
        services.finish_run(run, ImportRun.Status.FAILED, error=str(error))
    except PermanentImportError as error:
        services.finish_run(run, ImportRun.Status.FAILED, error=str(error))
    except Exception as error:
        # An unexpected bug must still close the run, never leave it "running".
        logger.exception("run crashed run=%s", run.pk)
        services.finish_run(run, ImportRun.Status.FAILED, error=f"internal error: {error!r}")
    else:
        status = ImportRun.Status.PARTIAL if counts.rows_failed else ImportRun.Status.SUCCEEDED
        services.finish_run(run, status, counts=counts)
    return {"run_id": run.pk, "status": run.status}
