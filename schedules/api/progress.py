"""Live progress of a run: the row the importer updates about once a second, refreshed from the
Celery task state (`PROGRESS` meta) when that is newer."""

from __future__ import annotations

import logging

from schedules.models import ImportRun

logger = logging.getLogger(__name__)


def fraction(run: ImportRun) -> float | None:
    if run.status == ImportRun.Status.SUCCEEDED:
        return 1.0
    if not run.bytes_total:
        return None
    return round(min(run.bytes_read / run.bytes_total, 1.0), 4)


def refresh_live(run: ImportRun) -> None:
    """Take the task state's figures when the run is running and they are ahead of the row."""
    if run.status != ImportRun.Status.RUNNING or not run.celery_task_id:
        return
    from celery.result import AsyncResult

    try:
        result = AsyncResult(run.celery_task_id)
        state, meta = result.state, result.info
    except Exception:  # the result backend is an optimisation here, never a failure
        logger.warning("task state unavailable for run %s", run.pk, exc_info=True)
        return
    if state != "PROGRESS" or not isinstance(meta, dict):
        return
    if (meta.get("bytes_read") or 0) > run.bytes_read:
        run.bytes_read = meta["bytes_read"]
        run.bytes_total = meta.get("bytes_total") or run.bytes_total
        run.rows_read = max(run.rows_read, meta.get("rows_read") or 0)
