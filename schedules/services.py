"""The business rules of importbeat, used by the API, the admin, the commands and the tasks alike.

Surfaces call these functions instead of touching models directly, so that a rule (an import's
beat entry follows its status, a tick runs once, a finished run updates its import's counters)
holds whichever surface made the change.
"""

from __future__ import annotations

import logging
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .models import Dataset, ImportRun, ScheduledImport

logger = logging.getLogger("importbeat.runs")

IMPORT_FIELDS = {
    f.name
    for f in ScheduledImport._meta.get_fields()
    if getattr(f, "editable", False) and f.name not in {"id", "owner", "dataset"}
} - {
    "status", "total_runs", "successful_runs", "failed_runs", "consecutive_failures",
    "last_run_at", "last_run_status", "next_run_at", "created_at", "updated_at",
}  # fmt: skip


class RunAlreadyActive(Exception):
    """A manual trigger met a queued or running run of the same import."""

    def __init__(self, run: ImportRun) -> None:
        super().__init__(f"run {run.pk} of this import is {run.status}")
        self.run = run


# --- imports ----------------------------------------------------------------------------------


def get_or_create_dataset(owner: AbstractBaseUser, name: str) -> Dataset:
    dataset, _ = Dataset.objects.get_or_create(owner=owner, name=name)
    return dataset


@transaction.atomic
def create_import(owner: AbstractBaseUser, *, dataset: str, **fields: Any) -> ScheduledImport:
    """Validate and create an import with its dataset and its beat entry."""
    imp = ScheduledImport(owner=owner, dataset=get_or_create_dataset(owner, dataset), **fields)
    imp.full_clean(exclude=["dataset"])
    imp.save()
    return imp


@transaction.atomic
def update_import(
    imp: ScheduledImport, *, dataset: str | None = None, **fields: Any
) -> ScheduledImport:
    """Change an import; its beat entry is re-scheduled in the same transaction."""
    unknown = set(fields) - IMPORT_FIELDS
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    for name, value in fields.items():
        setattr(imp, name, value)
    if dataset is not None and dataset != imp.dataset.name:
        imp.dataset = get_or_create_dataset(imp.owner, dataset)
    imp.full_clean(exclude=["dataset"])
    imp.save()
    return imp


def pause_import(imp: ScheduledImport) -> ScheduledImport:
    return _set_status(imp, ScheduledImport.Status.PAUSED)


def resume_import(imp: ScheduledImport) -> ScheduledImport:
    return _set_status(imp, ScheduledImport.Status.ACTIVE)


def cancel_import(imp: ScheduledImport) -> ScheduledImport:
    """Stop scheduling the import and cancel its queued runs (a running one finishes)."""
    with transaction.atomic():
        _set_status(imp, ScheduledImport.Status.CANCELLED)
        imp.runs.filter(status=ImportRun.Status.QUEUED).update(
            status=ImportRun.Status.CANCELLED, finished_at=timezone.now()
        )
    return imp


def _set_status(imp: ScheduledImport, status: str) -> ScheduledImport:
    imp.status = status
    imp.save()
    return imp


def delete_import(imp: ScheduledImport) -> None:
    """Delete the import, its runs and (through the post_delete signal) its beat entry."""
    imp.delete()


# --- runs -------------------------------------------------------------------------------------


def enqueue_run(
    imp: ScheduledImport,
    *,
    trigger: str = ImportRun.Trigger.API,
    user: AbstractBaseUser | None = None,
) -> ImportRun:
    """Queue a run now; refuse while another run of the import is queued or running."""
    with transaction.atomic():
        ScheduledImport.objects.select_for_update().get(pk=imp.pk)
        active = imp.runs.filter(status__in=ImportRun.ACTIVE_STATUSES).first()
        if active:
            raise RunAlreadyActive(active)
        run = ImportRun.objects.create(
            scheduled_import=imp, trigger=trigger, triggered_by=user,
            celery_task_id=str(uuid.uuid4()),
        )  # fmt: skip
        transaction.on_commit(lambda: send_run(run))
    return run


def dispatch_scheduled_tick(
    import_id: int, scheduled_for: str | datetime | None
) -> ImportRun | None:
    """Turn one beat tick into at most one run and queue it.

    The run is keyed by (import, tick): a second dispatch of the same tick, from a second beat
    or a redelivered message, meets the unique constraint and does nothing.
    """
    imp = ScheduledImport.objects.filter(pk=import_id).first()
    if imp is None or imp.status != ScheduledImport.Status.ACTIVE:
        return None
    if isinstance(scheduled_for, str):
        scheduled_for = parse_datetime(scheduled_for)
    tick = scheduled_for or imp.tick_for(timezone.now())
    try:
        with transaction.atomic():
            run = ImportRun.objects.create(
                scheduled_import=imp,
                trigger=ImportRun.Trigger.SCHEDULE,
                scheduled_for=tick,
                celery_task_id=str(uuid.uuid4()),
            )
            transaction.on_commit(lambda: send_run(run))
    except IntegrityError:
        logger.info("tick already dispatched import=%s tick=%s", import_id, tick.isoformat())
        return None
    ScheduledImport.objects.filter(pk=imp.pk).update(next_run_at=imp.next_runs(1)[0])
    return run


def send_run(run: ImportRun) -> None:
    """Put the run on the broker with the time limits of its import."""
    from tasks.tasks import execute_run

    imp = run.scheduled_import
    execute_run.apply_async(
        args=[run.pk],
        task_id=run.celery_task_id,
        soft_time_limit=imp.timeout_seconds,
        # The hard limit leaves the soft one time to record the timeout.
        time_limit=imp.timeout_seconds + 30,
    )


def claim_run(run: ImportRun, *, task_id: str = "") -> bool:
    """Move a queued or retrying run to running; False when another worker has it."""
    now = timezone.now()
    claimed = ImportRun.objects.filter(
        pk=run.pk, status__in=[ImportRun.Status.QUEUED, ImportRun.Status.RETRYING]
    ).update(
        status=ImportRun.Status.RUNNING,
        started_at=run.started_at or now,
        attempts=F("attempts") + 1,
        worker=socket.gethostname(),
        celery_task_id=task_id or run.celery_task_id,
    )
    if claimed:
        run.refresh_from_db()
        logger.info(
            "run started import=%s run=%s attempt=%s trigger=%s",
            run.scheduled_import_id, run.pk, run.attempts, run.trigger,
        )  # fmt: skip
    return claimed == 1


@dataclass
class RunCounts:
    rows_read: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    rows_deleted: int = 0
    rows_failed: int = 0
    row_errors: list[dict[str, Any]] = field(default_factory=list)


def record_progress(run_id: int, **progress: int) -> None:
    """Store live progress (bytes_read, bytes_total, rows_read) without touching anything else."""
    ImportRun.objects.filter(pk=run_id).update(**progress)


def mark_retrying(run: ImportRun, error: str, countdown: float) -> None:
    """Record a failed attempt that will be retried after `countdown` seconds."""
    attempts = run.error_details.get("attempts", [])
    attempts.append({"attempt": run.attempts, "error": error, "at": timezone.now().isoformat()})
    run.error_details = {**run.error_details, "attempts": attempts}
    run.status = ImportRun.Status.RETRYING
    run.error_message = f"attempt {run.attempts} failed, retrying in {countdown:.0f}s: {error}"
    run.save(update_fields=["status", "error_message", "error_details"])


COUNT_FIELDS = (
    "rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_deleted", "rows_failed",
)  # fmt: skip
FINISH_FIELDS = [
    "status", "finished_at", "duration_ms", "error_message", "error_details", *COUNT_FIELDS,
]  # fmt: skip


def finish_run(
    run: ImportRun,
    status: str,
    *,
    counts: RunCounts | None = None,
    error: str = "",
) -> ImportRun:
    """Close the run and fold its outcome into the import's counters, atomically."""
    now = timezone.now()
    with transaction.atomic():
        imp = ScheduledImport.objects.select_for_update().get(pk=run.scheduled_import_id)
        run.status = status
        run.finished_at = now
        run.duration_ms = int((now - (run.started_at or run.queued_at)).total_seconds() * 1000)
        if counts is not None:
            for name in COUNT_FIELDS:
                setattr(run, name, getattr(counts, name))
            if counts.row_errors:
                run.error_details = {**run.error_details, "rows": counts.row_errors}
        if error:
            run.error_message = error
            attempts = run.error_details.get("attempts", [])
            attempts.append({"attempt": run.attempts, "error": error, "at": now.isoformat()})
            run.error_details = {**run.error_details, "attempts": attempts}
        elif status in (ImportRun.Status.SUCCEEDED, ImportRun.Status.PARTIAL):
            run.error_message = (
                f"{counts.rows_failed} rows failed" if counts and counts.rows_failed else ""
            )
        # Progress columns (bytes_read, ...) were written by the importer; keep them.
        run.save(update_fields=FINISH_FIELDS)
        apply_outcome(imp, run)
    logger.info(
        "run finished import=%s run=%s status=%s read=%s inserted=%s updated=%s unchanged=%s "
        "deleted=%s failed=%s duration_ms=%s",
        imp.pk, run.pk, run.status, run.rows_read, run.rows_inserted, run.rows_updated,
        run.rows_unchanged, run.rows_deleted, run.rows_failed, run.duration_ms,
    )  # fmt: skip
    return run


def apply_outcome(imp: ScheduledImport, run: ImportRun) -> None:
    """Update the import's counters for one finished run (caller holds the row lock)."""
    succeeded = run.status in (ImportRun.Status.SUCCEEDED, ImportRun.Status.PARTIAL)
    failed = run.status in (ImportRun.Status.FAILED, ImportRun.Status.TIMED_OUT)
    if not (succeeded or failed):
        return
    ScheduledImport.objects.filter(pk=imp.pk).update(
        total_runs=F("total_runs") + 1,
        successful_runs=F("successful_runs") + int(succeeded),
        failed_runs=F("failed_runs") + int(failed),
        consecutive_failures=0 if succeeded else F("consecutive_failures") + 1,
        last_run_at=run.finished_at,
        last_run_status=run.status,
    )
