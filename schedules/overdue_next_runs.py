"""The next run beat makes of each import it is overdue with, worked out once per schedule: what
the dashboard's next runs are chosen by and the admin's imports list is sorted by.

`next_run_at` keeps beat's place, the first tick it has not dispatched, however old. The run
beat makes of an overdue import stands for another tick (ScheduledImport.next_run_listed:
`coalesce`'s one catch-up, or under `skip` the first tick after the grace period ago). Both
lists showed each import's next run but chose and sorted their rows by the column: during an
outage an import listed at 13:00 (its 10:00 missed, `skip`) took a place among the dashboard's
ten before one due at 12:40, and the admin's sorted list put it first.

An import within the grace period (or not yet due) is listed at `next_run_at` itself
(Schedule.first_to_run), so the indexed column (import_due_idx) orders those. The overdue ones
are none while beat runs and share a few schedules and ticks in an outage (every hourly import
missed from 10:00): they are read grouped by what decides their next run (schedule, catch-up,
tick due), and each group's is worked out once, by schedules.display (the model's rule, kept per
second).

Past OVERDUE_GROUPS_LIMIT groups, the imports of the groups left are not placed: the dashboard
left them out of its next runs and the admin sorted them by their oldest tick, both without a
word. Each now says how many, and the oldest tick beat has not dispatched (Unplaced).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import (
    Case,
    DateTimeField,
    Expression,
    F,
    Func,
    JSONField,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce

from common import database_clock

from . import display, rows
from .models import ScheduledImport

# The most groups of overdue imports (a schedule, a catch-up policy and a tick due) a list works
# out, the longest overdue first: up to 0.3 ms a group of a cron rule, a dashboard's next runs
# 24 ms at this many (tests/bench/bench_next_runs_in_an_outage.py: 1,000 imports overdue, each
# its own daily rule), where the bench's 1,000 overdue of 48 shared schedules make 16 groups.
# Past it, the groups left are not worked out: the dashboard leaves their imports out of its
# next runs, and the admin sorts them by `next_run_at` (their oldest tick, as it sorted all);
# each says so (Unplaced).
OVERDUE_GROUPS_LIMIT = 200
# An array slice PostgreSQL reads as "every id" (its bounds are 32-bit).
ALL_IDS = 2**31 - 1

OVERDUE_SQL = """
    SELECT i.schedule_type, i.cron_expression, i.interval_seconds, i.timezone, i.catchup,
           i.next_run_at, (array_agg(i.id ORDER BY i.id))[1:%s], count(*)
    FROM {imports} i
    WHERE i.status = {active} AND i.next_run_at <= %s
    GROUP BY 6, 1, 2, 3, 4, 5
    ORDER BY 6, 1, 2, 3, 4, 5
    LIMIT %s
"""  # the overdue active imports, through import_due_idx (a range of it up to the cutoff)

# How many imports are overdue in all: read only when the groups were cut at the limit.
OVERDUE_COUNT_SQL = """
    SELECT count(*) FROM {imports} i WHERE i.status = {active} AND i.next_run_at <= %s
"""  # import_due_idx as above


@dataclass(frozen=True)
class OverdueGroup:
    """Overdue imports whose next run is one: the tick it stands for, and their ids."""

    next_run: datetime
    ids: list[int]


@dataclass(frozen=True)
class Unplaced:
    """The overdue imports past the groups worked out: how many, and the oldest tick beat has
    not dispatched (beat down since then at the latest)."""

    imports: int
    since: datetime

    def counted(self) -> str:
        return f"{self.imports:,} overdue import{'' if self.imports == 1 else 's'}"

    def words(self, since: str, placed_as: str) -> str:
        """What a list says of them, in plain words: `since` the time as it shows times, and
        `placed_as` what it did with them."""
        return (
            f"{self.counted()} could not be placed by their next run: beat has dispatched no "
            f"tick since {since}, and the next runs of only the {OVERDUE_GROUPS_LIMIT} longest "
            f"overdue groups of schedules are worked out; {placed_as}."
        )


@dataclass(frozen=True)
class Overdue:
    """The overdue imports by group (overdue_groups), and those past the groups worked out."""

    groups: list[OverdueGroup]
    unplaced: Unplaced | None


def overdue_cutoff() -> datetime:
    """The grace period ago, to the second (as display.next_run_of reads the clock): an import
    whose `next_run_at` is no later is overdue (models.is_overdue), any other is listed at it."""
    now = database_clock.now().replace(microsecond=0)
    return now - timedelta(seconds=settings.MISSED_TICK_GRACE_SECONDS)


def overdue_groups(
    cutoff: datetime, first: int | None = None, count_unplaced: bool = True
) -> Overdue:
    """The overdue active imports (`next_run_at` no later than `cutoff`) by group, the oldest
    tick due first, at most OVERDUE_GROUPS_LIMIT groups; each group with the next run beat
    makes of it and the ids of its imports in order, the first `first` of them (all: None).
    And, when the groups were cut at the limit, the imports left out (a second statement,
    unless not `count_unplaced`)."""
    with connection.cursor() as cursor:
        cursor.execute(_statement(OVERDUE_SQL), [first or ALL_IDS, cutoff, OVERDUE_GROUPS_LIMIT])
        found = cursor.fetchall()
        unplaced = None
        if count_unplaced and len(found) >= OVERDUE_GROUPS_LIMIT:
            cursor.execute(_statement(OVERDUE_COUNT_SQL), [cutoff])
            # Read a moment later: an import made overdue meanwhile is counted, one dispatched
            # is not (never below none).
            left = cursor.fetchone()[0] - sum(row[-1] for row in found)
            if left > 0:
                unplaced = Unplaced(imports=left, since=found[0][5])
    groups = [
        OverdueGroup(display.next_run_of(kind, cron, interval, zone, catchup, due), ids)
        for kind, cron, interval, zone, catchup, due, ids, _count in found
    ]
    return Overdue(groups, unplaced)


@cache
def _statement(template: str) -> str:
    return template.format(
        imports=connection.ops.quote_name(ScheduledImport._meta.db_table),
        active=rows.literals([ScheduledImport.Status.ACTIVE.value]),
    )


class ListedNextRun(Expression):
    """An import's next run as lists show it (`next_run_listed`; none for an import beat does
    not fire), as an expression a queryset is ordered by: the admin's "next run" column.

    Worked out when a query is compiled with it, not when it is made (it is the column's, made
    once): the overdue imports are read then (overdue_groups, one statement) and their next
    runs go into the query by id, as one JSON value.
    """

    output_field = DateTimeField()

    def order_note(self) -> str | None:
        """What a list sorted by it says of the overdue imports it could not place, sorted by
        their oldest tick instead (admin_lists.ListAtScale): they were, without a word, before
        imports whose next runs came sooner than theirs, shown beside them."""
        unplaced = overdue_groups(overdue_cutoff(), first=1).unplaced
        if unplaced is None:
            return None
        return unplaced.words(
            f"{unplaced.since:%Y-%m-%d %H:%M} UTC",
            "in this order they come by the oldest tick they missed, not by the next run shown",
        )

    def resolve_expression(
        self,
        query: Any = None,
        allow_joins: bool = True,
        reuse: Any = None,
        summarize: bool = False,
        for_save: bool = False,
    ) -> Expression:
        cutoff = overdue_cutoff()
        listed = {
            str(pk): group.next_run.isoformat()
            # Those left out are said once, by the list's words (order_note).
            for group in overdue_groups(cutoff, count_unplaced=False).groups
            for pk in group.ids
        }
        by_id = Func(
            Cast(Value(json.dumps(listed)), JSONField()),
            Cast(F("id"), TextField()),
            template="(%(expressions)s)",
            arg_joiner=" ->> ",
            output_field=TextField(),
        )
        active = ScheduledImport.Status.ACTIVE
        expression = Case(
            When(status=active, next_run_at__gt=cutoff, then=F("next_run_at")),
            When(status=active, then=Coalesce(Cast(by_id, DateTimeField()), F("next_run_at"))),
            default=None,
            output_field=DateTimeField(),
        )
        return expression.resolve_expression(query, allow_joins, reuse, summarize, for_save)
