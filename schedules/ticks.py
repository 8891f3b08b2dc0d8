"""The one tick function: when an import's schedule is due.

Everything that shows or does a schedule asks this module: the API's and the admin's
`next_run_at` and `next_runs`, beat's decision to dispatch, the tick a late dispatch records,
catch-up and the reconciliation of ticks against runs. Nothing else (not Celery's `crontab`,
which reads day-of-month and day-of-week with AND and refuses a 7 for Sunday) decides a tick, so
what is listed is what fires.

Cron is standard (Vixie) cron, as croniter evaluates it by default: day-of-month and day-of-week
are OR'ed when both are restricted, 0 and 7 are Sunday, month and day names are accepted, and the
macros `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight` and `@hourly` stand
for their five fields. Cron is evaluated in the import's time zone: croniter gives the local wall
times, and `Schedule._ticks_of` places them in real time across DST changes as Vixie cron does.
Interval ticks sit on multiples of the interval since the epoch, so every process derives the same
tick from a time.
"""

from __future__ import annotations

import copy
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# Field position -> {name: number}.
NAMES = {
    3: {name: number for number, name in enumerate(MONTH_NAMES, start=1)},
    4: {name: number for number, name in enumerate(DAY_NAMES)},
}
_SINGLE_RANGE = re.compile(r"^(\d+)-(\d+)(/\d+)?$")
_OPEN_STEP = re.compile(r"^(\d+)/(\d+)$")
DAY_OF_WEEK = 4
# A day field's `*` as the range it stands for, when it is stepped after a list's first item
# (normalize): the weekdays' as an open step, which normalize writes as the list of days.
STEPPED_STAR_AS_RANGE = {2: "1-31", DAY_OF_WEEK: "0"}
# Rules kept parsed: more than a deployment's distinct rules. Least-recently-used eviction
# taken in a cycle keeps nothing: at 4,096, beat over 10,000 imports of distinct rules parsed
# every rule at every tick (0.47 ms each, against 0.07 ms planned from a kept one), and its
# ticks went out 9.4 s late (p95). A parsed rule costs about 1.6 KB: 80 MB when all are taken.
RULES_KEPT = 50_000
# Missed ticks counted one by one; an import missing more (a schedule down for weeks) counts
# this many, and the rest are still skipped or coalesced (schedules.dispatch).
MAX_COUNTED = 10_000


def expand_macro(expression: str) -> str:
    """The five fields a cron expression stands for (`@daily` is `0 0 * * *`)."""
    cleaned = " ".join(expression.split())
    return MACROS.get(cleaned.lower(), cleaned)


@lru_cache(maxsize=RULES_KEPT)
def normalize(expression: str) -> str:
    """The expression as croniter must be given it to mean what cron means.

    Macros become their fields and names become numbers. A one-value range (`1-1`, `mon-mon`) is
    written as that value: croniter reads it as `*` (every day, where cron means Mondays). A
    weekday step from a day to the end of the week (`5/1`) runs to 7, Sunday, as cron's range
    0-7 does; croniter stopped at Saturday, and read `7/1` as every day.

    A step over a whole day field after the first item of its list (`1,*/2`) is written as the
    range it steps over (`1,1-31/2`; weekdays as the list of days): cron ORs the day fields when
    neither starts with `*`, but croniter, finding a `*` anywhere in one, read the other field
    naming every day as `*`, and ANDed them. `* * 1,*/2 * 0-6` (the 1st and odd days, or any
    weekday: every day, as cron runs it) fired on odd days alone.
    """
    fields = expand_macro(expression).lower().split()
    normalized = []
    for position, field in enumerate(fields):
        atoms = []
        for index, atom in enumerate(field.split(",")):
            for name, number in NAMES.get(position, {}).items():
                atom = atom.replace(name, str(number))
            if index and position in STEPPED_STAR_AS_RANGE and atom.startswith("*/"):
                atom = STEPPED_STAR_AS_RANGE[position] + atom[1:]
            match = _SINGLE_RANGE.match(atom)
            if match and int(match.group(1)) == int(match.group(2)):
                atom = match.group(1)
            step = _OPEN_STEP.match(atom) if position == DAY_OF_WEEK else None
            if step and int(step.group(2)) > 0:
                days = {day % 7 for day in range(int(step.group(1)), 8, int(step.group(2)))}
                atom = ",".join(str(day) for day in sorted(days))
            atoms.append(atom)
        normalized.append(",".join(atoms))
    return " ".join(normalized)


@dataclass(frozen=True)
class Schedule:
    """What decides the ticks of one import: a cron expression in a zone, or an interval."""

    cron_expression: str = ""
    timezone: str = "UTC"
    interval_seconds: int | None = None

    @property
    def is_cron(self) -> bool:
        return self.interval_seconds is None

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment`, in UTC."""
        return next(self.ticks_after(moment))

    def ticks_after(self, moment: datetime) -> Iterator[datetime]:
        """Every tick strictly after `moment`, in order, in UTC (an endless iterator)."""
        if not self.is_cron:
            every = self.interval_seconds
            tick = (int(moment.timestamp()) // every + 1) * every
            while True:
                yield datetime.fromtimestamp(tick, tz=UTC)
                tick += every
        local = moment.astimezone(self._zone)
        # In the first pass of a repeated hour, the second pass's wall times before `moment`'s
        # are still to come: the walk starts that much earlier.
        start = local.replace(tzinfo=None) - _repeated_by(local)
        walls = _wall_times(self.fields, self.day_or, start, forward=True)
        last = moment
        for tick in self._in_order(walls, start, forward=True):
            if tick > last:  # (a fixed job's skipped times all run at the one jump)
                last = tick
                yield tick

    def tick_at_or_before(self, moment: datetime) -> datetime:
        """The newest tick not after `moment` (what a dispatch at `moment` stands for)."""
        moment = moment.replace(microsecond=0)
        if not self.is_cron:
            every = self.interval_seconds
            return datetime.fromtimestamp(int(moment.timestamp()) // every * every, tz=UTC)
        # The second is added in UTC: local arithmetic drops `fold` and would turn 02:29 CET
        # (the repeated hour) into 02:29 CEST, one hour earlier. In the second pass of a
        # repeated hour, the first pass's later wall times are behind `moment` too.
        local = (moment + timedelta(seconds=1)).astimezone(self._zone)
        start = local.replace(tzinfo=None) + _repeated_by(local)
        walls = _wall_times(self.fields, self.day_or, start, forward=False)
        return next(tick for tick in self._in_order(walls, start, forward=False) if tick <= moment)

    def first_to_run(
        self, due: datetime, now: datetime, grace: timedelta, *, coalesce: bool
    ) -> datetime:
        """The tick of the first run beat makes of the ticks from `due` (the first it has not
        dispatched) when it dispatches at `now`, as schedules.dispatch.plan_ticks plans them:
        what `next_run_at` and `next_runs` show.

        `due` itself while it is within the grace period (or still to come). Older ticks were
        missed (beat down or stalled) and never run as themselves: `skip` runs none of them, so
        the first tick after the grace period ago comes first; `coalesce` runs them once, as
        that tick's run when it is already due, or else as the latest missed tick's, which beat
        makes as soon as it runs. Listed from `due`, an outage showed ticks hours old that would
        never fire.
        """
        cutoff = now - grace
        if due > cutoff:
            return due
        first_on_time = self.next_after(cutoff)
        if coalesce and first_on_time > now:
            return self.tick_at_or_before(cutoff)
        return first_on_time

    def missed_from(self, due: datetime, cutoff: datetime) -> int:
        """How many ticks from `due` (the first not dispatched, itself included) up to `cutoff`
        (the grace period ago) were missed, at most MAX_COUNTED: beat's count of a schedule
        down for weeks (schedules.dispatch), and a change's of the ticks before it
        (ScheduledImport.sync_periodic_task)."""
        return 1 + len(self.ticks_between(due, cutoff, MAX_COUNTED - 1))

    def ticks_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Ticks in (start, end], at most `limit` of them (the newest ones are cut)."""
        found: list[datetime] = []
        for tick in self.ticks_after(start):
            if tick > end or len(found) >= limit:
                break
            found.append(tick)
        return found

    def describe(self) -> str:
        """The cron rule in words (cron-descriptor), saying OR where cron means OR, and saying
        what fires where cron-descriptor's words for the rule as written would not."""
        from cron_descriptor import Options, get_description

        options = Options()
        options.use_24hour_time_format = True
        options.day_of_week_start_index_zero = True
        fields = self._fields_to_describe()
        try:
            text = get_description(" ".join(fields), options)
        except Exception:  # any rule croniter takes is described: never a 500
            text = _plain_words(fields)
        if self.day_or:
            # Both restricted: cron runs on either day, while cron-descriptor's words read as
            # both ("on day 1 of the month, only on Wednesday"). Not when either starts with
            # `*` (`*/10`): cron then runs on days that are both, as the words say.
            text = text.replace(", only on ", ", or on ", 1)
            if ", or on " not in text:
                text += " (either the day of the month or the weekday)"
        return text

    def _fields_to_describe(self) -> tuple[str, str, str, str, str]:
        """The five fields as cron-descriptor describes what the ticks fire: each field as
        written where its words say what fires, else the values it fires at.

        - a step that does not divide its field's span restarts at each hour, day, month or
          year: `*/45` and `0/45` fire at :00 and :45 (not "every 45 minutes"), `0/7` hours at
          0, 7, 14 and 21, `*/16` days on the 1st and the 17th;
        - a list holding a step, a range with a step, or `*` (`8-18/2,23`) made cron-descriptor
          raise: the owner's import list and the dashboard answered 500 for a rule saved and
          firing as listed;
        - Sunday is 7 as well as 0 here, and cron-descriptor knows 0 only: `0-7` was "Sunday
          through Sunday" for a rule firing daily, and it raised on `*/7` or `3-5/7`: the
          weekdays are listed, or `*` when they are all (and the day of the month does not
          restrict it too).
        """
        minute, hour, dom, month, dow = self.fields.split()
        expanded = _parsed_rule(self.fields, self.day_or).expanded
        minute = _as_it_fires(minute, expanded[0], span=60, first=0)
        hour = _as_it_fires(hour, expanded[1], span=24, first=0)
        # Months differ in length: a step of a week or less reads fairly as "every N days".
        dom = _as_it_fires(dom, expanded[2], span=31, first=1, even_steps=range(1, 8))
        month = _as_it_fires(month, expanded[3], span=12, first=1)
        if "7" in re.split(r"[-,/]", dow) or not _says_what_fires(dow, span=7, first=0):
            days = sorted(set(expanded[4]) - {"*"}) if "*" not in expanded[4] else list(range(7))
            if days == list(range(7)) and dom == "*":
                dow = "*"
            else:
                dow = ",".join(str(day) for day in days)
        return minute, hour, dom, month, dow

    @property
    def fields(self) -> str:
        return normalize(self.cron_expression)

    @property
    def day_or(self) -> bool:
        """Vixie cron: day-of-month and day-of-week are OR'ed only when neither starts with `*`.

        croniter decides by the expanded values instead, so `*/2 * 3` would run on every odd day
        OR Wednesday there, while cron runs on odd days that are Wednesdays.
        """
        _minute, _hour, dom, _month, dow = self.fields.split()
        return not (dom.startswith("*") or dow.startswith("*"))

    @property
    def _zone(self) -> zoneinfo.ZoneInfo:
        return _zone(self.timezone)

    def _in_order(
        self, walls: Iterator[datetime], start: datetime, *, forward: bool
    ) -> Iterator[datetime]:
        """The ticks of the local wall times `walls` (rising, or falling when not `forward`, from
        `start`), in real-time order, in UTC.

        A wildcard job runs a repeated wall time twice, and the passes interleave with the
        walk: going forward, the first pass's 01:40 comes before the second pass's 01:10, so a
        second pass waits until the walk reaches a later tick (going back, the first pass
        waits).
        """
        waiting: list[datetime] = []
        found = start  # the wall time of the last tick, NEVER_YEARS from which none is
        for wall in walls:
            ticks = self._ticks_of(wall)
            if not ticks:
                if abs(wall.year - found.year) > NEVER_YEARS:
                    raise NeverFires(
                        f"no tick of {self.fields!r} within {NEVER_YEARS} years of {found:%Y}"
                    )
                continue
            found = wall
            tick, other = (ticks[0], ticks[1:]) if forward else (ticks[-1], ticks[:-1])
            while waiting and (waiting[0] < tick if forward else waiting[0] > tick):
                yield waiting.pop(0)
            yield tick
            waiting.extend(other if forward else reversed(other))

    def _ticks_of(self, wall: datetime) -> tuple[datetime, ...]:
        """When a local wall time the rule names runs, in UTC, over the DST changes as Vixie
        cron: none, one or two moments.

        A job at fixed times (`30 2 * * *`) runs once on the fall-back day, at the first 02:30,
        and soon after the jump on the spring-forward day (03:00). A wildcard job (minute or
        hour starting with `*`, like `*/15 * * * *` or `*/30 2 * * *`) runs by the new time:
        through the repeated hour again, and not for the times the jump skipped.

        croniter walks the wall times without a zone, and they are placed in real time here,
        for every caller alike. croniter's own DST handling was no rule of cron's: it moved a
        skipped time into the jump only for an hour field it did not read as `*` (a range over
        every hour is `*` to it: `30 0-23 * * *` lost its skipped 01:30), and its walk from
        before Lord Howe's 30-minute change went past the repeated half hour (`*/7` had no
        second 01:35).
        """
        zone = self._zone
        before = wall.replace(tzinfo=zone).utcoffset()  # fold=0: the offset before a change
        after = wall.replace(tzinfo=zone, fold=1).utcoffset()
        first = (wall - before).replace(tzinfo=UTC)
        if before == after:
            return (first,)
        if before > after:  # repeated: the clocks went back over it
            return (first, (wall - after).replace(tzinfo=UTC)) if self._wildcard else (first,)
        if self._wildcard:  # skipped by the jump forward
            return ()
        # The moment of the jump (zoneinfo does not say when its changes are): it lies between
        # this wall time read at the new offset and read at the old one, to the second.
        early, late = (wall - after).replace(tzinfo=UTC), first
        while late - early > _SECOND:
            middle = early + (late - early) // 2
            middle -= timedelta(microseconds=middle.microsecond)
            if middle.astimezone(zone).utcoffset() == before:
                early = middle
            else:
                late = middle
        return (late,)

    @property
    def _wildcard(self) -> bool:
        """Vixie cron's wildcard job: the minute or the hour field starts with `*`."""
        minute, hour = self.fields.split(maxsplit=2)[:2]
        return minute.startswith("*") or hour.startswith("*")


_SECOND = timedelta(seconds=1)
_ZERO = timedelta(0)


def _repeated_by(local: datetime) -> timedelta:
    """How far the clocks went back over `local`'s wall time (zero when it happens once)."""
    return max(local.replace(fold=0).utcoffset() - local.replace(fold=1).utcoffset(), _ZERO)


@lru_cache(maxsize=1024)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


# No rule's ticks lie further apart (a Feb 29 that is a given weekday comes back within 40
# years): a walk this long past its start or its last tick without another found a rule whose
# every time the clocks skip.
NEVER_YEARS = 100


class NeverFires(ValueError):
    """A rule every time of which the zone's clocks skip: `*/30 2 8-14 3 */7` in New York names
    the spring-forward hour alone. Its walk ran to the year 9999 (3 s) and raised there.

    Counted from the walk's start, a rare rule's five ticks listed (`0 0 29 2 */7`: Feb 29 when
    it is a Sunday, 2032 to 2156) ended more than NEVER_YEARS from it: raised, its import's
    save answered 500 after the import was kept, and so did every page that listed its ticks.
    """


def _wall_times(fields: str, day_or: bool, start: datetime, *, forward: bool) -> Iterator[datetime]:
    """The local wall times (no zone) `fields` names, after `start` (before it when not
    `forward`), endless.

    Parsing a rule costs ten times a step, and beat steps every due import at each tick: the
    parsed rule is kept (RULES_KEPT), and each caller gets its own shallow copy (the parsed
    fields are only read), so iterators never share a position.
    """
    itr = copy.copy(_parsed_rule(fields, day_or))
    itr.set_current(start, force=True)
    step = itr.get_next if forward else itr.get_prev
    while True:
        yield step(datetime)


@lru_cache(maxsize=RULES_KEPT)
def _parsed_rule(fields: str, day_or: bool):
    from croniter import croniter

    return croniter(fields, datetime(2000, 1, 1), day_or=day_or)


def _as_it_fires(
    field: str, values: list, *, span: int, first: int, even_steps: range | None = None
) -> str:
    """`field` where cron-descriptor's words for it say what fires, else the values it fires
    at (`*` when it fires at every one)."""
    if _says_what_fires(field, span=span, first=first, even_steps=even_steps):
        # A range over the whole field fires as `*`: said as `*` ("Every 15 minutes", not
        # "Every 15 minutes, minutes 0 through 59 past the hour").
        return _whole_range_as_star(field, span=span, first=first)
    if "*" in values or sorted(values) == list(range(first, first + span)):
        return "*"
    return ",".join(str(value) for value in sorted(values))


def _says_what_fires(field: str, *, span: int, first: int, even_steps: range | None = None) -> bool:
    """Whether cron-descriptor describes `field` truly: `*`, numbers and ranges in a list, a
    range with a step shorter than the range, or one step over the whole span that divides
    it (`*/15`, `5/15`, `0-59/15`).

    A range over the whole field steps as `*` does: `0-59/45` fires at :00 and :45, not
    "every 45 minutes". A step as long as its range fires at its ends only: `0-23/25` fires
    at 00:00 alone, not "every 25 hours".
    """
    atoms = field.split(",")
    if all(re.fullmatch(r"\d+(-\d+)?", atom) for atom in atoms) or field == "*":
        return True
    if len(atoms) > 1:
        return False
    base, _, step = _whole_range_as_star(field, span=span, first=first).partition("/")
    if not step.isdigit() or not int(step):
        return False
    every = int(step)
    if re.fullmatch(r"\d+-\d+", base):
        low, high = (int(end) for end in base.split("-"))
        return every < high - low
    start = first if base == "*" else int(base) if base.isdigit() else None
    even = every in even_steps if even_steps is not None else span % every == 0
    return start is not None and even and start - first < every


def _whole_range_as_star(field: str, *, span: int, first: int) -> str:
    """`*/N` for a step over the range of the whole field (`0-59/N`, `1-12/N`), else `field`."""
    base, slash, step = field.partition("/")
    return f"*/{step}" if slash and base == f"{first}-{first + span - 1}" else field


def _plain_words(fields: tuple[str, str, str, str, str]) -> str:
    """Words for a rule cron-descriptor cannot describe (none is known): each field named."""
    names = ("minute", "hour", "day of the month", "month", "day of the week")
    said = [f"{name} {value}" for name, value in zip(names, fields, strict=True) if value != "*"]
    return "At " + ", ".join(said) if said else "Every minute"
