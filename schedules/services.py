"""The business rules of importbeat, used by the API, the admin, the commands and the tasks alike.

Surfaces call these functions instead of touching models directly, so that a rule (an import's
beat entry follows its status, a tick runs once, a finished run updates its import's counters)
holds whichever surface made the change.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import alerts
from .models import Dataset, ImportRun, Record, ScheduledImport

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
def delete_records(records: QuerySet[Record]) -> int:
    """Delete records by hand (the admin); their datasets no longer match any imported file.

    The datasets are locked first, as an import's merge locks its dataset before it touches
    records: a deletion and a merge of one dataset take turns instead of deadlocking.
    """
    dataset_ids = lock_datasets(records.order_by().values_list("dataset_id", flat=True).distinct())
    deleted, _ = records.delete()
    mark_datasets_changed(dataset_ids)
    return deleted


def lock_datasets(dataset_ids: Iterable[int]) -> list[int]:
    """Lock these datasets' rows until the transaction ends; return the ids that still exist.

    Every writer of records takes this lock first (an import's merge, a deletion by hand), so
    writers of one dataset take turns, always in the same order. Readers are not blocked;
    deleting the dataset itself waits for the lock.
    """
    return list(
        Dataset.objects.select_for_update(no_key=True)
        .filter(pk__in=list(dataset_ids))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def mark_datasets_changed(dataset_ids: Iterable[int]) -> None:
    """The next import of these datasets merges its file even if it is the one applied last."""
    Dataset.objects.filter(pk__in=list(dataset_ids)).update(applied_digest="", applied_run=None)


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
    import_id: int,
    scheduled_for: str | datetime | None,
    trigger: str = ImportRun.Trigger.SCHEDULE,
) -> ImportRun | None:
    """Turn one beat tick into at most one run and queue it.

    The run is keyed by (import, tick): a second dispatch of the same tick, from a second beat
    or a redelivered message, meets the unique constraint and does nothing. `trigger` is
    `catchup` when beat dispatches a tick it missed while it was down.
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
                trigger=trigger,
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


class Claim(StrEnum):
    CLAIMED = "claimed"
    # The run is no longer waiting (finished, cancelled, or another worker has it).
    GONE = "gone"
    # Another run of the same import is running or backing off (run_one_in_progress_per_import).
    BUSY = "busy"


def claim_run(
    run: ImportRun, *, task_id: str = "", worker: str = "", reclaim: bool = False
) -> Claim:
    """Start an attempt: move the run to running with one conditional UPDATE.

    `reclaim` also accepts a run that is already `running`: the caller holds the import's
    lease, so the worker of that attempt is gone (its lease expired) and the message came back
    (reject on worker lost, or the maintenance sweep). The lost attempt is recorded and counted.
    """
    statuses = [ImportRun.Status.QUEUED, ImportRun.Status.RETRYING]
    if reclaim:
        statuses.append(ImportRun.Status.RUNNING)
    now = timezone.now()
    try:
        with transaction.atomic():
            claimed = ImportRun.objects.filter(pk=run.pk, status__in=statuses).update(
                status=ImportRun.Status.RUNNING,
                started_at=run.started_at or now,
                attempts=F("attempts") + 1,
                worker=worker or socket.gethostname(),
                celery_task_id=task_id or run.celery_task_id,
                heartbeat_at=now,
                attempt_started_at=now,
            )
    except IntegrityError:
        return Claim.BUSY
    if not claimed:
        return Claim.GONE
    was_running = run.status == ImportRun.Status.RUNNING
    run.refresh_from_db()
    if was_running:
        _record_attempt(run, "the worker running this attempt was lost", run.attempts - 1)
        run.save(update_fields=["error_details"])
    logger.info(
        "run started import=%s run=%s attempt=%s trigger=%s worker=%s",
        run.scheduled_import_id, run.pk, run.attempts, run.trigger, run.worker,
    )  # fmt: skip
    return Claim.CLAIMED


def _record_attempt(run: ImportRun, error: str, attempt: int | None = None) -> None:
    attempts = run.error_details.get("attempts", [])
    attempts.append(
        {
            "attempt": run.attempts if attempt is None else attempt,
            "error": error,
            "at": timezone.now().isoformat(),
        }
    )
    run.error_details = {**run.error_details, "attempts": attempts}


def heartbeat(run_id: int) -> None:
    """The run's attempt is alive; the maintenance sweep leaves it alone."""
    ImportRun.objects.filter(pk=run_id, status=ImportRun.Status.RUNNING).update(
        heartbeat_at=timezone.now()
    )


def skip_run(run: ImportRun, reason: str) -> bool:
    """End a run that never started because another run of its import was in progress."""
    now = timezone.now()
    skipped = ImportRun.objects.filter(pk=run.pk, status=ImportRun.Status.QUEUED).update(
        status=ImportRun.Status.SKIPPED, finished_at=now, duration_ms=0, error_message=reason
    )
    if skipped:
        logger.info(
            "run skipped import=%s run=%s trigger=%s reason=%s",
            run.scheduled_import_id, run.pk, run.trigger, reason,
        )  # fmt: skip
    return skipped == 1


def recover_lost_run(run_id: int, stale_before: datetime) -> ImportRun | None:
    """Resolve a run left `running` by a dead worker: queue another attempt, or fail it.

    Called by the maintenance sweep for runs whose heartbeat stopped before `stale_before`
    while nobody holds the import's lease. The row is locked and re-checked, so a heartbeat
    that arrived meanwhile wins.
    """
    with transaction.atomic():
        run = (
            ImportRun.objects.select_for_update()
            .select_related("scheduled_import")
            .filter(pk=run_id, status=ImportRun.Status.RUNNING, heartbeat_at__lt=stale_before)
            .first()
        )
        if run is None:
            return None
        imp = run.scheduled_import
        silent = int((timezone.now() - run.heartbeat_at).total_seconds())
        lived = (run.heartbeat_at - (run.attempt_started_at or run.heartbeat_at)).total_seconds()
        if lived >= imp.timeout_seconds:
            # It was alive until its time was up: the hard time limit killed it, too stuck for
            # the soft one to be handled.
            return finish_run(
                run,
                ImportRun.Status.TIMED_OUT,
                error=f"the run exceeded its {imp.timeout_seconds}s time limit (killed)",
            )
        error = f"the worker running attempt {run.attempts} was lost (no heartbeat for {silent}s)"
        if run.attempts > imp.max_retries:
            return finish_run(run, ImportRun.Status.FAILED, error=error)
        _record_attempt(run, error)
        run.status = ImportRun.Status.RETRYING
        run.error_message = f"{error}; queued again"
        run.heartbeat_at = timezone.now()
        # A new message id: the lost one may still come back after the visibility timeout, and
        # is then refused by the claim.
        run.celery_task_id = str(uuid.uuid4())
        run.save(
            update_fields=[
                "status", "error_message", "error_details", "heartbeat_at", "celery_task_id",
            ]
        )  # fmt: skip
        transaction.on_commit(lambda: send_run(run))
    logger.warning("run recovered import=%s run=%s attempt=%s", imp.pk, run.pk, run.attempts)
    return run


def resend_stale_run(run_id: int, stale_before: datetime) -> bool:
    """Send a queued or retrying run's message again when it has waited suspiciously long.

    Its message may have been lost (Redis restarted without persistence). If it was not, the
    two deliveries meet at the lease and the claim, and one of them runs.
    """
    touched = (
        ImportRun.objects.filter(
            pk=run_id,
            status__in=[ImportRun.Status.QUEUED, ImportRun.Status.RETRYING],
        )
        .filter(untouched_since(stale_before))
        .update(heartbeat_at=timezone.now())
    )
    if touched:
        run = ImportRun.objects.select_related("scheduled_import").get(pk=run_id)
        logger.warning("run message sent again import=%s run=%s", run.scheduled_import_id, run.pk)
        send_run(run)
    return touched == 1


def untouched_since(stale_before: datetime) -> Q:
    """Runs not touched since `stale_before` (heartbeat, or queued time when never touched)."""
    return Q(heartbeat_at__lt=stale_before) | Q(
        heartbeat_at__isnull=True, queued_at__lt=stale_before
    )


def missed_ticks(now: datetime) -> list[tuple[ScheduledImport, datetime]]:
    """The latest missed tick of every active `coalesce` import, for beat's catch-up.

    A tick is missed when it is not after `now` but after the newest tick that has a run and
    after the import's last edit (a pause, a resume, a new schedule: ticks before it belong to
    the old state): beat was down, or no beat led, when it was due. All missed ticks of an
    import coalesce into this one; `skip` imports simply wait for their next tick. An import
    whose schedule never ran yet has nothing to catch up: it starts with its next tick.
    """
    found = []
    imports = ScheduledImport.objects.filter(
        status=ScheduledImport.Status.ACTIVE, catchup=ScheduledImport.Catchup.COALESCE
    ).annotate(last_tick=Max("runs__scheduled_for"))
    for imp in imports:
        if imp.last_tick is None:
            continue
        tick = imp.tick_for(now)
        if tick > max(imp.last_tick, imp.updated_at):
            found.append((imp, tick))
    return found


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


def record_phase(run_id: int, phase: str) -> None:
    """Note the importer's step (download, staging, checks, merge) for the dashboard."""
    ImportRun.objects.filter(pk=run_id).update(phase=phase)


def mark_retrying(run: ImportRun, error: str, countdown: float) -> None:
    """Record a failed attempt that will be retried after `countdown` seconds."""
    _record_attempt(run, error)
    run.status = ImportRun.Status.RETRYING
    run.error_message = f"attempt {run.attempts} failed, retrying in {countdown:.0f}s: {error}"
    # The stale-message check of the sweep counts from here.
    run.heartbeat_at = timezone.now() + timedelta(seconds=countdown)
    run.save(update_fields=["status", "error_message", "error_details", "heartbeat_at"])


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
        alerts.on_run_finished(imp, run)
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
