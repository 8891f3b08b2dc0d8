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
from .models import ScheduledImport
from .services import OWNER_INACTIVE, end_waiting_runs

Status = ScheduledImport.Status


@dataclass
class StatusChanges:
    changed: list[ScheduledImport] = field(default_factory=list)
    # each import left as it was, with why
    left: list[tuple[ScheduledImport, str]] = field(default_factory=list)


def change_statuses(
    import_ids: Iterable[int], status: str, *, from_statuses: Iterable[str]
) -> StatusChanges:
    """Set `status` on each import whose status is one of `from_statuses` when it is locked;
    the others are left, each with why. Cancelling also ends the imports' waiting runs, as
    services.cancel_import does."""
    from_statuses = tuple(from_statuses)
    result = StatusChanges()
    with transaction.atomic():
        imports = list(
            ScheduledImport.objects.select_for_update(of=("self",))
            .filter(pk__in=list(import_ids))
            .select_related("owner")
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
            _apply(result.changed, status, database_clock.now())
    return result


def inactive_owners(owner_ids: set[int]) -> set[int]:
    users = get_user_model().objects.filter(pk__in=owner_ids, is_active=False)
    return set(users.values_list("pk", flat=True))


def _apply(imports: list[ScheduledImport], status: str, moment: datetime) -> None:
    enabled = status == Status.ACTIVE
    was = {imp.pk: imp.status for imp in imports}
    switched = [imp for imp in imports if (imp.status == Status.ACTIVE) != enabled]
    for imp in switched:
        # As sync_periodic_task: a beat entry switched on or off starts its ticks afresh.
        imp.next_run_at = imp.next_runs(1, after=moment)[0] if enabled else None
        imp.schedule_changed_at = moment
        imp.late_since = None
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
                [moment, [imp.pk for imp in switched], [imp.next_run_at for imp in switched]],
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
            # the import alone makes it.
            imp.sync_periodic_task()
    if status == Status.CANCELLED:
        end_waiting_runs([imp.pk for imp in imports], moment)
    history.record_status_changes(imports, was)


_TABLE = connection.ops.quote_name(ScheduledImport._meta.db_table)
_UPDATE_SQL = f"UPDATE {_TABLE} SET status = %s, updated_at = %s WHERE id = ANY(%s::bigint[])"
_SWITCH_SQL = (
    f"UPDATE {_TABLE} AS i SET next_run_at = v.next_run_at, schedule_changed_at = %s,"
    " late_since = NULL FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, next_run_at)"
    " WHERE i.id = v.id"
)
