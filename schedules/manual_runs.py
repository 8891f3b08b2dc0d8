"""Run now over many imports at once: the admin's list action.

services.enqueue_run queues one import's run in a transaction of its own, with its history
entry and its message: the admin's Run now over 300 imports took 3.1 s and 1,509 queries
(10,000 about 100 s), where Pause over as many takes a quarter of a second. Here the runs are
queued a batch at a time: the batch's imports locked in id order, those with an active run or a
deactivated owner left with why, the others' runs inserted together with their history entries,
and their messages sent through one producer once the batch commits. What enqueue_run refuses
is refused here, for the same reasons, under the same lock.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, transaction

from . import history, services
from .import_locks import lock_in_id_order
from .models import ImportRun, ScheduledImport, active_run_order
from .statuses import inactive_owners

# Imports locked, and messages sent, per transaction: a batch holds its imports' locks (beat
# skips them meanwhile) for about a tenth of a second.
BATCH = 500


@dataclass
class ManualRuns:
    queued: list[ImportRun] = field(default_factory=list)
    # each import not run for its active run, with the run's words
    busy: list[tuple[ScheduledImport, str]] = field(default_factory=list)
    # not run, its owner's account deactivated (services.OWNER_INACTIVE)
    owner_inactive: list[ScheduledImport] = field(default_factory=list)
    # the broker refused the runs of a batch: those runs were withdrawn, and the imports of
    # the batches after it were not tried; `not_tried` counts both, not the imports of the
    # refused batch said busy or of a deactivated owner above (a new try refuses those again)
    unavailable: services.BrokerUnavailable | None = None
    not_tried: int = 0


def run_now(import_ids: Iterable[int], user: AbstractBaseUser | None) -> ManualRuns:
    """Queue a manual run of each import, as services.enqueue_run does for one."""
    ids = sorted(set(import_ids))
    result = ManualRuns()
    for start in range(0, len(ids), BATCH):
        try:
            _queue_batch(ids[start : start + BATCH], user, result)
        except services.BrokerUnavailable as unavailable:
            result.unavailable = unavailable
            # (counted len(ids) - start: the refused batch's busy imports were said twice)
            result.not_tried += len(ids[start + BATCH :])
            break
    return result


def _queue_batch(ids: list[int], user: AbstractBaseUser | None, result: ManualRuns) -> None:
    runs: list[ImportRun] = []
    entries: list = []
    try:
        with transaction.atomic():
            locked = lock_in_id_order(ScheduledImport.objects.filter(pk__in=ids))
            imports = list(
                ScheduledImport.objects.filter(pk__in=locked).select_related("owner").order_by("pk")
            )
            # Read after the imports' locks, in statements of their own: a run or a
            # deactivation committed while this waited is seen, as enqueue_run's insert sees it.
            active = _active_runs(locked)
            inactive = inactive_owners({imp.owner_id for imp in imports})
            for imp in imports:
                if imp.pk in active:
                    run = active[imp.pk]
                    result.busy.append((imp, f"run {run.pk} is {run.status}"))
                elif imp.owner_id in inactive:
                    result.owner_inactive.append(imp)
                else:
                    runs.append(_new_run(imp, user))
            if not runs:
                return
            ImportRun.objects.bulk_create(runs)
            entries = history.record_run_events(runs, "run triggered", user)
            transaction.on_commit(lambda: services.send_runs(runs, sent_events=True))
    except services.BrokerUnavailable:
        # As enqueue_run: nothing carries the runs, and each would block its import's next
        # trigger with a 409. Only the runs withdrawn were not run: one a worker took already
        # (its message went before the refusal) stays, and so do all when the withdrawal
        # fails, queued (reconciliation sends them again, services.send_runs).
        withdrawn: set[int] = set()
        with contextlib.suppress(DatabaseError), transaction.atomic():
            still_queued = set(
                ImportRun.objects.select_for_update()
                .filter(pk__in=[run.pk for run in runs], status=ImportRun.Status.QUEUED)
                .values_list("pk", flat=True)
            )
            ImportRun.objects.filter(pk__in=still_queued).delete()
            history.delete_entries(
                [entry for entry in entries if entry.additional_data["run"] in still_queued]
            )
            withdrawn = still_queued
        result.queued.extend(run for run in runs if run.pk not in withdrawn)
        result.not_tried += len(withdrawn)
        raise
    result.queued.extend(runs)


def _new_run(imp: ScheduledImport, user: AbstractBaseUser | None) -> ImportRun:
    return ImportRun(
        scheduled_import=imp, trigger=ImportRun.Trigger.MANUAL, triggered_by=user,
        celery_task_id=str(uuid.uuid4()),
    )  # fmt: skip


def _active_runs(import_ids: list[int]) -> dict[int, ImportRun]:
    """Each import's active run, the one enqueue_run's 409 names (active_run_order)."""
    runs = (
        ImportRun.objects.filter(
            scheduled_import_id__in=import_ids, status__in=ImportRun.ACTIVE_STATUSES
        )
        .order_by("scheduled_import_id", *active_run_order())
        .only("pk", "status", "scheduled_import_id")
    )
    active: dict[int, ImportRun] = {}
    for run in runs:
        active.setdefault(run.scheduled_import_id, run)
    return active
