"""Which imports need someone to look at them, and why: one list for the dashboard and the admin.

Each reason is one entry of REASONS: the database condition that finds its imports and the
words that explain it. A new reason (an import that is late, say) is one more entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from functools import cache, reduce
from operator import or_
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Func, IntegerField, Q, QuerySet

from common import database_clock

from .admin_links import admin_page
from .models import ImportRun, ScheduledImport, is_late

FAILED = (ImportRun.Status.FAILED, ImportRun.Status.TIMED_OUT)


@dataclass(frozen=True)
class Reason:
    code: str
    # Finds the imports it applies to (in SQL; a callable of the overdue bound when it
    # depends on the time) ...
    condition: Q | Callable[[datetime], Q]
    # ... and tells, for one of them, whether it applies and in what words.
    applies: Callable[[ScheduledImport], bool]
    describe: Callable[[ScheduledImport], str]


def _failures(imp: ScheduledImport) -> str:
    streak = imp.consecutive_failures
    return f"last run {imp.last_run_status.replace('_', ' ')}" + (
        f" ({streak} failures in a row)" if streak > 1 else ""
    )


def overdue_bound() -> datetime:
    """A next run due before this is overdue (MISSED_TICK_GRACE_SECONDS ago)."""
    return database_clock.now() - timedelta(seconds=settings.MISSED_TICK_GRACE_SECONDS)


def late_condition(overdue_before: datetime | None = None) -> Q:
    """ScheduledImport.is_late() in SQL (the `?late=` filter and the "late" reason)."""
    if overdue_before is None:
        overdue_before = overdue_bound()
    return Q(status=ScheduledImport.Status.ACTIVE) & (
        Q(late_since__isnull=False) | Q(next_run_at__lt=overdue_before)
    )


def late_imports_count() -> int:
    """Active imports with a missed tick or an overdue next one (SPEC 4: *late*): the health
    check's, the dashboard's and `/metrics`' count."""
    return _read(_late_imports)[0][0]


def _late_imports(overdue_before: datetime) -> QuerySet:
    # count() as a query to compile: COUNT as a plain function, which Django does not group by.
    late = ScheduledImport.objects.filter(late_condition(overdue_before)).order_by()
    return late.values_list(Func("pk", function="COUNT"))


def _lateness(imp: ScheduledImport) -> str:
    if imp.late_since is None or not imp.missed_while_late:
        # (a streak begun while no beat ran counts no missed tick until beat is back)
        return "late: its next run is overdue (is beat running?)"
    since = f"{imp.late_since:%Y-%m-%d %H:%M} UTC"
    return (
        f"late since {since}: {imp.missed_while_late} scheduled run(s) missed since"
        f" ({imp.missed_ticks} in all)"
    )


REASONS: tuple[Reason, ...] = (
    Reason(
        "failed",
        Q(last_run_status__in=FAILED),
        lambda imp: imp.last_run_status in FAILED,
        _failures,
    ),
    Reason(
        "partial",
        Q(last_run_status=ImportRun.Status.PARTIAL),
        lambda imp: imp.last_run_status == ImportRun.Status.PARTIAL,
        lambda imp: "last run partial: some rows were rejected",
    ),
    Reason("late", late_condition, lambda imp: imp.is_late(), _lateness),
)


def reasons_for(imp: ScheduledImport | Listed) -> list[dict[str, str]]:
    """Why `imp` needs attention; none for a cancelled import, as attention_condition has it
    (the admin's column flagged cancelled imports the dashboard and the API left out)."""
    if imp.status == ScheduledImport.Status.CANCELLED:
        return []
    return [{"code": r.code, "text": r.describe(imp)} for r in REASONS if r.applies(imp)]


def attention_condition(overdue_before: datetime | None = None) -> Q:
    """An import (not cancelled) for which any reason applies: the dashboard's list, the API's
    `?needs_attention=`."""
    if overdue_before is None:
        overdue_before = overdue_bound()
    reasons = reduce(
        or_,
        (r.condition(overdue_before) if callable(r.condition) else r.condition for r in REASONS),
    )
    return reasons & ~Q(status=ScheduledImport.Status.CANCELLED)


@dataclass(frozen=True, slots=True)
class Listed:
    """What the list reads of an import: the reasons read it as they read an import (their
    fields and is_late()), without a model instance and its owner's made for each row (with
    the columns left unread, a third of the list's CPU at every view and poll)."""

    pk: int
    name: str
    owner: str
    status: str
    consecutive_failures: int
    last_run_status: str
    last_run_at: datetime | None
    late_since: datetime | None
    next_run_at: datetime | None
    missed_ticks: int
    missed_while_late: int

    def is_late(self) -> bool:
        return is_late(self.status, self.late_since, self.next_run_at)


LISTED_COLUMNS = tuple(
    "owner__username" if field.name == "owner" else field.name for field in fields(Listed)
)


def needing_attention(limit: int = 50) -> list[dict[str, Any]]:
    """Imports (not cancelled) needing attention, longest failure streaks first."""
    return [_listed(Listed(*row)) for row in _read(_needing_attention, limit)]


def count_needing_attention() -> int:
    """How many imports need attention in all (needing_attention shows the first ones)."""
    return _read(_count_needing_attention)[0][0]


def _count_needing_attention(overdue_before: datetime) -> QuerySet:
    return (
        ScheduledImport.objects.filter(attention_condition(overdue_before))
        .order_by()
        # count(*) as a plain expression: an aggregate here made Django group by the import
        .values_list(Func(template="count(*)", output_field=IntegerField()))
    )


def _needing_attention(overdue_before: datetime, limit: int) -> QuerySet:
    return (
        ScheduledImport.objects.filter(attention_condition(overdue_before))
        .order_by("-consecutive_failures", "-last_run_at", "id")
        .values_list(*LISTED_COLUMNS)[:limit]
    )


def _read(query: Callable[..., QuerySet], *args: Any) -> list[tuple]:
    """The rows of `query` at the overdue bound of now, in a statement the ORM compiled once
    per process: compiling the reasons' conditions at every dashboard view and every poll was
    a quarter of `live.json`'s CPU."""
    statement, compiled_params, overdue_at = _compiled(query, *args)
    params = list(compiled_params)
    params[overdue_at] = overdue_bound()
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall()


# Stands for the overdue bound, the one value of these statements that changes from one call to
# the next, while the ORM compiles them.
_OVERDUE_STAND_IN = datetime(1970, 1, 1, tzinfo=UTC)


@cache
def _compiled(query: Callable[..., QuerySet], *args: Any) -> tuple[str, tuple[Any, ...], int]:
    statement, params = query(_OVERDUE_STAND_IN, *args).query.sql_with_params()
    return statement, tuple(params), params.index(_OVERDUE_STAND_IN)


def _listed(imp: Listed) -> dict[str, Any]:
    reasons = reasons_for(imp)
    return {
        "id": imp.pk,
        "url": admin_page("scheduledimport", imp.pk),
        "name": imp.name,
        "owner": imp.owner,
        "reasons": reasons,
        "reason": "; ".join(reason["text"] for reason in reasons),
        "consecutive_failures": imp.consecutive_failures,
        "last_run_status": imp.last_run_status,
        "last_run_at": imp.last_run_at.isoformat() if imp.last_run_at else None,
        "status": imp.status,
    }
