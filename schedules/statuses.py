"""Pause, resume or cancel many imports at once: the admin's list actions and an account's
deactivation.

One import's change (services.pause_import and its kin) saves the import and its beat entry
and diffs it for the history: about 9 ms, so the admin's action on 10,000 imports held a web
worker and their locks for 85 s, and deactivating a user with thousands of imports as long.
Here the same change is a few statements for the lot: the imports locked, their columns
written in batches, their beat entries switched in one UPDATE, their history entries (the rows
auditlog writes for such a save) inserted together. `tests/test_many_imports_change_status_at
_once.py` compares both ways column by column.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django_celery_beat.models import PeriodicTask

from common import database_clock

from . import history
from .models import (
    ScheduledImport,
    is_overdue,
    planned_schedules,
    tell_of_ticks_missed_at_change,
    ticks_missed_before,
)
from .services import OWNER_INACTIVE, end_waiting_runs, skip_scheduled_runs_not_started

Status = ScheduledImport.Status


@dataclass
class StatusChanges:
    changed: list[ScheduledImport] = field(default_factory=list)
    # each import left as it was, with why
    left: list[tuple[ScheduledImport, str]] = field(default_factory=list)


def change_statuses(
    import_ids: Iterable[int],
    status: str,
    *,
    from_statuses: Iterable[str],
    skip_scheduled_runs: bool = True,
) -> StatusChanges:
    """Set `status` on each import whose status is one of `from_statuses` when it is locked;
    the others are left, each with why. Cancelling also ends the imports' waiting runs, as
    services.cancel_import does; pausing skips their scheduled runs not started, as
    services.pause_import does (`skip_scheduled_runs`: a deactivation cancels them instead)."""
    from_statuses = tuple(from_statuses)
    result = StatusChanges()
    with transaction.atomic():
        imports = list(
            ScheduledImport.objects.select_for_update(of=("self",))
            .filter(pk__in=list(import_ids))
            .select_related("owner", "periodic_task")
            .order_by("pk")
        )
        # Read after the imports' locks, in a statement of its own (as services._set_status):
        # a resume that waited for a deactivation's pause saw the owner as it was before.
        inactive = (
            inactive_owners({imp.owner_id for imp in imports}) if status == Status.ACTIVE else set()
        )
        for imp in imports:
            if imp.status not in from_statuses:
                result.left.append((imp, imp.status))
            elif imp.owner_id in inactive:
                result.left.append((imp, OWNER_INACTIVE))
            else:
                result.changed.append(imp)
        if result.changed:
            _apply(result.changed, status, database_clock.now(), skip_scheduled_runs)
    return result


def inactive_owners(owner_ids: set[int]) -> set[int]:
    users = get_user_model().objects.filter(pk__in=owner_ids, is_active=False)
    return set(users.values_list("pk", flat=True))


def _apply(
    imports: list[ScheduledImport], status: str, moment: datetime, skip_scheduled_runs: bool
) -> None:
    enabled = status == Status.ACTIVE
    was = {imp.pk: imp.status for imp in imports}
    switched = [imp for imp in imports if (imp.status == Status.ACTIVE) != enabled]
    missed = _ticks_missed(switched, moment)
    for imp in switched:
        # As sync_periodic_task: a beat entry switched on or off starts its ticks afresh, the
        # ticks it missed while active counted first (its late streak goes on, or begins).
        imp.next_run_at = imp.next_runs(1, after=moment)[0] if enabled else None
        imp.schedule_changed_at = moment
        if imp.pk in missed:
            imp.missed_ticks += missed[imp.pk][0]
        if not enabled:
            # Late no more, its streak ended by the switch (sync_periodic_task).
            imp.late_since, imp.missed_while_late = None, 0
    for imp in imports:
        imp.status = status
        imp.updated_at = moment
    with connection.cursor() as cursor:
        # One statement (Django's bulk_update compiles a CASE per row and column: 2.4 ms an
        # import, most of the action's time).
        cursor.execute(_UPDATE_SQL, [status, moment, [imp.pk for imp in imports]])
        if switched:
            cursor.execute(
                _SWITCH_SQL,
                [
                    moment,
                    enabled,
                    enabled,
                    moment,
                    [imp.pk for imp in switched],
                    [imp.next_run_at for imp in switched],
                    [missed.get(imp.pk, (0,))[0] for imp in switched],
                ],
            )
    # PeriodicTask.save() empties last_run_at of a disabled entry; beat reads neither (it
    # fires from next_run_at), the admin's Periodic tasks page shows both.
    entry = {"enabled": enabled, **({} if enabled else {"last_run_at": None})}
    PeriodicTask.objects.filter(pk__in=[imp.periodic_task_id for imp in imports]).update(
        **entry, date_changed=moment
    )
    for imp in imports:
        if imp.periodic_task_id is None:
            # Its entry deleted in the admin (the import keeps none): made again, as saving
            # the import alone makes it; its ticks started afresh above (mended alone, not
            # again: a streak begun by the ticks it missed was ended by a second start).
            imp.sync_periodic_task(mend_only=True)
    if status == Status.CANCELLED:
        end_waiting_runs([imp.pk for imp in imports], moment)
    if status == Status.PAUSED and skip_scheduled_runs:
        skip_scheduled_runs_not_started([imp.pk for imp in imports], moment)
    if missed:
        tell_of_ticks_missed_at_change(missed, told=enabled)
    history.record_status_changes(imports, was)


def _ticks_missed(switched: list[ScheduledImport], moment: datetime) -> dict[int, tuple]:
    """{import id: (ticks missed, the first)} of the imports switched off whose next tick was
    missed (beat down or stalled) before the change, as sync_periodic_task counts them."""
    overdue = [imp for imp in switched if is_overdue(imp.next_run_at, moment)]
    if not overdue:
        return {}
    entries = {
        imp.pk: (imp.periodic_task.crontab_id, imp.periodic_task.interval_id)
        if imp.periodic_task
        else (None, None)
        for imp in overdue
    }
    planned = planned_schedules(entries, {imp.pk: imp.schedule for imp in overdue})
    counts = {
        imp.pk: (ticks_missed_before(planned[imp.pk], imp.next_run_at, moment), imp.next_run_at)
        for imp in overdue
    }
    return {pk: found for pk, found in counts.items() if found[0]}


_TABLE = connection.ops.quote_name(ScheduledImport._meta.db_table)
_UPDATE_SQL = f"UPDATE {_TABLE} SET status = %s, updated_at = %s WHERE id = ANY(%s::bigint[])"
# The ticks missed before the switch counted as dispatch._advance counts them.
_SWITCH_SQL = f"""
    UPDATE {_TABLE} AS i
       SET next_run_at = v.next_run_at, schedule_changed_at = %s,
           missed_ticks = i.missed_ticks + v.missed,
           missed_while_late = CASE WHEN NOT %s THEN 0
                                    WHEN v.missed = 0 THEN i.missed_while_late
                                    WHEN i.late_since IS NULL THEN v.missed
                                    ELSE i.missed_while_late + v.missed END,
           late_since = CASE WHEN NOT %s THEN NULL
                             WHEN v.missed > 0 THEN COALESCE(i.late_since, %s)
                             ELSE i.late_since END
      FROM unnest(%s::bigint[], %s::timestamptz[], %s::int[]) AS v(id, next_run_at, missed)
     WHERE i.id = v.id
"""
