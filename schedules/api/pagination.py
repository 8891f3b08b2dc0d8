"""List shapes: `{"count", "next", "previous", "results"}` everywhere."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from django.core.paginator import EmptyPage, InvalidPage, Page, PageNotAnInteger, Paginator
from django.db import connections
from django.db.models import Q, QuerySet
from django.db.models.query import FlatValuesListIterable
from rest_framework import pagination, serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from schedules import rows

# Up to this many rows a list's `count` is exact; past it, PostgreSQL's estimate.
EXACT_COUNT_LIMIT = 10_000
# The runs lists: counting a user's runs joins each to its import, so the exact count stops
# sooner (a thousand rows cost a few milliseconds, ten thousand fifty).
EXACT_RUN_COUNT_LIMIT = 1_000
# A page asked by number (`?page=N`) of a list paged by cursor starts at most this many rows
# down: deeper, PostgreSQL reads and throws away every row above it (KeysetPagination).
MAX_PAGE_OFFSET = 10_000


def bounded_count(queryset: QuerySet, limit: int = EXACT_COUNT_LIMIT) -> int:
    """The number of rows of `queryset`: exact up to `limit`, estimated past it.

    `GET /runs/` counted a year of runs (a million rows, 0.5 s) on every page. Counting stops
    after the limit instead (milliseconds through an index), and a longer list takes the
    planner's estimate of the same query, never less than the limit: the figure a user reads
    as "about 180,000 runs", and what the page links follow.
    """
    # Unordered: any `limit` rows will do, and PostgreSQL may then take them in the cheapest
    # order (a user's runs import by import) instead of sorting them.
    counted = queryset.order_by()[: limit + 1].count()
    if counted <= limit:
        return counted
    return max(planner_estimate(queryset), counted)


def planner_estimate(queryset: QuerySet) -> int:
    """The row count PostgreSQL's planner expects of `queryset` (EXPLAIN; nothing is read)."""
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class BoundedCountPaginator(Paginator):
    exact_count_limit = EXACT_COUNT_LIMIT

    @cached_property
    def count(self) -> int:
        if isinstance(self.object_list, QuerySet):
            return bounded_count(self.object_list, self.exact_count_limit)
        return super().count


class PageTooDeep(InvalidPage):
    """A page number whose rows start past the paginator's `max_offset`."""


class PagedByRowsPaginator(BoundedCountPaginator):
    """Pages whose end is told by their rows, not by `count`.

    Past the exact limit `count` is the planner's estimate, and the planner multiplies the
    selectivities of correlated filters (an import's runs that failed): 4,000 failed runs were
    estimated at 373, `count` was floored at 1,001, and `next` ended at page 11 of 40 with a
    404 past it, three quarters of the runs out of reach without a word. A page reads one row
    more than it shows instead: that row says whether a next page exists, and a page past the
    estimate answers while rows are there. No query is added, and none counts the whole list.
    """

    def validate_number(self, number: Any) -> int:
        # Django's also refuses a number past `num_pages`, which past the limit is an estimate;
        # page() refuses a page that has no rows.
        try:
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            number = int(number)
        except (TypeError, ValueError) as error:
            raise PageNotAnInteger(self.error_messages["invalid_page"]) from error
        if number < 1:
            raise EmptyPage(self.error_messages["min_page"])
        return number

    # `?page=last`: the last page by `count`, answered even when the estimate put it past the
    # rows (an empty page whose `previous` leads back), as before.
    last_asked = False
    # The most rows a page by number may start below (None: any); deeper is PageTooDeep.
    max_offset: int | None = None

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        # An exact count knows the end without reading; an estimate is read past, as far as
        # PostgreSQL's OFFSET (a bigint) goes: `?page=10**20` was a 500 there.
        if number > self.num_pages and (
            self.count_is_exact or bottom + self.per_page + 1 > rows.MAX_ID
        ):
            raise EmptyPage(self.error_messages["no_results"])
        if self.max_offset is not None and bottom > self.max_offset:
            raise PageTooDeep(f"page {number} starts past row {self.max_offset:,}")
        found = list(self.object_list[bottom : bottom + self.per_page + 1])
        if not found and number > 1 and not self.last_asked:
            raise EmptyPage(self.error_messages["no_results"])
        return RowsPage(found[: self.per_page], number, self, has_next=len(found) > self.per_page)

    @property
    def count_is_exact(self) -> bool:
        return not isinstance(self.object_list, QuerySet) or self.count <= self.exact_count_limit


class RowsPage(Page):
    def __init__(self, object_list: Any, number: int, paginator: Paginator, *, has_next: bool):
        super().__init__(object_list, number, paginator)
        self._has_next = has_next

    def has_next(self) -> bool:
        return self._has_next


class RunCountPaginator(PagedByRowsPaginator):
    exact_count_limit = EXACT_RUN_COUNT_LIMIT


class CountedLinks:
    """A page of a list paged by links: its `count` beside them (DRF's cursor pages have none)."""

    count: int

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {
                "count": self.count,
                "next": self.get_next_link(),  # type: ignore[attr-defined]
                "previous": self.get_previous_link(),  # type: ignore[attr-defined]
                "results": data,
            }
        )


class StrictPageSize:
    """`?page_size=` is a whole number from 1 to the list's maximum, or a 400.

    DRF took anything else for the default size: `?page_size=abc` or `0` answered 50 rows,
    `?page_size=5000` 500, and a client that read one page believing it held what it asked
    for missed the rest without a word.
    """

    page_size_query_param = "page_size"
    max_page_size: int

    def get_page_size(self, request: Request) -> int | None:
        asked = request.query_params.get(self.page_size_query_param)
        if asked is None:
            return self.page_size  # type: ignore[attr-defined]
        if not _whole_number(asked) or not 1 <= int(asked) <= self.max_page_size:
            raise serializers.ValidationError(
                {
                    self.page_size_query_param: [
                        f"{asked!r} is not a whole number from 1 to {self.max_page_size}"
                    ]
                }
            )
        return int(asked)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)  # type: ignore[misc]
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
        return parameters


class PageNumberPagination(StrictPageSize, pagination.PageNumberPagination):
    """Pages by number; `count` is exact up to EXACT_COUNT_LIMIT rows, estimated past it, and
    `next` and the 404 past the end are told by the rows (PagedByRowsPaginator).

    A page number that is none is a 400, and one past the end a 404, both in our words: DRF
    said "Invalid page." for both, and Django's paginator "That page contains no results".
    """

    django_paginator_class = PagedByRowsPaginator
    max_page_size = 500
    invalid_page_message = "page {page_number} is past the last page of this list"

    def get_page_number(self, request: Request, paginator: Paginator) -> int | str:
        asked = request.query_params.get(self.page_query_param)
        if asked in self.last_page_strings:
            paginator.last_asked = True  # type: ignore[attr-defined]
        if asked is None or asked in self.last_page_strings:
            return super().get_page_number(request, paginator)
        if not _whole_number(asked) or int(asked) < 1:
            raise serializers.ValidationError(
                {self.page_query_param: [f"{asked!r} is not a page number (1, 2, ... or last)"]}
            )
        return int(asked)


# Which way a cursor reads: `a`, the rows after its place in the list's order; `b`, those
# before it.
AFTER, BEFORE = "a", "b"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(value: datetime) -> str:
    return str((value - EPOCH) // timedelta(microseconds=1))


def _from_micros(text: str) -> datetime | None:
    try:
        return EPOCH + timedelta(microseconds=int(text))
    except OverflowError:
        return None


def _from_id(text: str) -> int | None:
    return int(text) if int(text) <= rows.MAX_ID else None


# A place's parts in a cursor, by the type of their field: the text each must be, how a value
# is written, and how it is read back (None: no list gave it).
PLACE_PARTS: dict[type, tuple[str, Callable[[Any], str], Callable[[str], Any]]] = {
    # A time, in microseconds since 1970: as precise as PostgreSQL's timestamptz.
    datetime: (r"-?[0-9]{1,18}", _micros, _from_micros),
    # An id, a bigint.
    int: (r"[0-9]{1,19}", str, _from_id),
}
# The place of the schema's example links.
EXAMPLE_PLACE: dict[type, Any] = {datetime: datetime(2024, 7, 1, 12, 10, tzinfo=UTC), int: 42}


class KeysetPagination(CountedLinks, PageNumberPagination):
    """A list whose `next` and `previous` carry a row's place in it, not a page number.

    Pages were OFFSETs, and the lists change while clients read them: the hourly retention job
    deletes runs (succeeded ones go at 30 days, failed ones stay 90, interleaved) and
    notifications, deleting an import takes its runs out of `GET /runs/`, and new rows come in
    at the top. A row deleted from a page already read moved every later row one place up, and
    the row crossing the page boundary was never shown; `until` did not help. A link now says
    "the rows after (or before) this one" by its place in the list's order (`order`: its
    fields, the last the id, so that no two rows share a place), so a client following them
    neither skips nor repeats a row; each page is a walk of the list's index from that place,
    never an OFFSET over a year of rows.

    `?page=N` still answers the N-th page (for a person jumping to a page), its links cursors,
    as long as the page starts within MAX_PAGE_OFFSET rows: an OFFSET reads every row it skips,
    and `?page=16000` of a year of runs read 800,000 of them (0.4 s a request, as much for a
    page past the end); a deeper page is a 400 that names the ways there (`next`, the filters
    by date, `?page=last`).
    `?page=last` reads the list from its other end: the real last rows, where page
    `count / page_size` of an estimate above the rows was empty and its `previous` a 404.

    `count` is exact up to the paginator's `exact_count_limit` rows, estimated past it.
    """

    # The list's order, each field with its type (a key of PLACE_PARTS); the last is the id.
    order: tuple[tuple[str, type], ...]
    # Whether the list reads from the largest place (newest first).
    descending = True
    # What every cursor of this list starts with: a cursor of another list is refused, not
    # read as a place in this one.
    cursor_tag = ""
    # The path of the schema's example links.
    example_path: str
    # How else to reach rows deeper than a page number goes (MAX_PAGE_OFFSET).
    deeper_hint = "or ask `?page=last` for the list's end"

    cursor_query_param = "cursor"
    cursor_query_description = (
        "where a page starts: take it from `next` or `previous`, which carry it, never build it"
    )
    invalid_cursor_message = (
        "this cursor is not one this list gave (copy `next` or `previous` whole): "
        "start again from the first page"
    )

    @property
    def fields(self) -> list[str]:
        return [field for field, _ in self.order]

    def paginate_queryset(
        self, queryset: QuerySet, request: Request, view: Any = None
    ) -> list[Any] | None:
        """The page's rows in the list's order; the places of its first and last are kept for
        the links.

        `queryset` is the list as the view chose it (scope and filters): of rows, or of their
        ids alone (PageReadByIds), whose page is then their ids."""
        self.request = request
        size = self.get_page_size(request)
        if not size:
            return None
        asked_page = request.query_params.get(self.page_query_param)
        cursor = request.query_params.get(self.cursor_query_param)
        if cursor is not None and asked_page is not None:
            raise serializers.ValidationError(
                {
                    self.cursor_query_param: [
                        f"give `{self.cursor_query_param}` (from `next` or `previous`) or "
                        f"`{self.page_query_param}`, not both"
                    ]
                }
            )
        # Ids alone are read with the rest of their place (id first), which makes the links.
        self.ids_only = issubclass(queryset._iterable_class, FlatValuesListIterable)
        listed = queryset.values_list("pk", *self.fields[:-1]) if self.ids_only else queryset
        exact_up_to = self.django_paginator_class.exact_count_limit
        place = None
        if cursor is not None:
            way, place = self._decode(cursor)
            found, self.has_previous, self.has_next = self._from_place(listed, way, place, size)
            self.count = bounded_count(listed, exact_up_to)
        elif asked_page in self.last_page_strings:
            self.count = bounded_count(listed, exact_up_to)
            found, self.has_previous, self.has_next = self._last(listed, size, exact_up_to)
        else:
            paginator = self.django_paginator_class(listed.order_by(*self._order(True)), size)
            paginator.max_offset = MAX_PAGE_OFFSET
            number = self.get_page_number(request, paginator)
            try:
                page = paginator.page(number)
            except PageTooDeep as error:
                raise serializers.ValidationError(
                    {self.page_query_param: [self._too_deep(number, size)]}
                ) from error
            except InvalidPage as error:
                raise NotFound(
                    self.invalid_page_message.format(page_number=number, message=str(error))
                ) from error
            found = list(page)
            self.count = paginator.count
            self.has_previous, self.has_next = page.has_previous(), page.has_next()
        # An empty page after (or before) a place whose rows were all deleted since links on
        # from that place.
        self.first = self._place(found[0]) if found else place
        self.last = self._place(found[-1]) if found else place
        return [row[0] for row in found] if self.ids_only else found

    def _too_deep(self, number: int, size: int) -> str:
        deepest = MAX_PAGE_OFFSET // size + 1
        return (
            f"page {number} is too deep to ask by number (pages by number go to {deepest} at "
            f"{size} a page): follow `next` from an earlier page, which goes on to any depth, "
            f"{self.deeper_hint}"
        )

    def _place(self, row: Any) -> tuple[Any, ...]:
        if self.ids_only:
            return (*row[1:], row[0])
        return tuple(getattr(row, field) for field in self.fields)

    def _order(self, forward: bool) -> list[str]:
        """The list's order (`forward`), or the same read the other way (`?page=last`,
        `previous`)."""
        sign = "-" if self.descending == forward else ""
        return [f"{sign}{field}" for field in self.fields]

    def _past(self, place: tuple[Any, ...], forward: bool, fields: list[str] | None = None) -> Q:
        """The rows past `place` along the list's order (`forward`) or against it.

        The first field bounds the index walk (`queued_at <= t`); within that bound the
        rows past the place are those past it by the first field or by the rest (the id:
        rows that share a time). Written `a = t AND id < i`, the second half was taken by
        PostgreSQL as a second index scan to OR with the first, and a page from the middle
        of 50,000 deliveries read 25,000 of them and sorted them (8.6 ms against 0.1)."""
        fields = self.fields if fields is None else fields
        compare = "lt" if self.descending == forward else "gt"
        first = Q(**{f"{fields[0]}__{compare}": place[0]})
        if len(fields) == 1:
            return first
        rest = self._past(place[1:], forward, fields[1:])
        return Q(**{f"{fields[0]}__{compare}e": place[0]}) & (first | rest)

    def _from_place(
        self, listed: QuerySet, way: str, place: tuple[Any, ...], size: int
    ) -> tuple[list[Any], bool, bool]:
        """The page after (or before) `place`, and whether rows precede and follow it."""
        forward = way == AFTER
        past = listed.filter(self._past(place, forward)).order_by(*self._order(forward))
        read = list(past[: size + 1])
        if forward:
            # The cursor came from an earlier page: a link back is given, as DRF's cursor
            # pages do, without a query to prove those rows are still there.
            return read[:size], True, len(read) > size
        return read[:size][::-1], len(read) > size, True

    def _last(self, listed: QuerySet, size: int, exact_up_to: int) -> tuple[list[Any], bool, bool]:
        """The list's last rows, read from its end: as many as the last page by an exact count
        holds, a full page past it (an estimate may be above the rows as well as below)."""
        shown = size
        if self.count <= exact_up_to and self.count % size:
            shown = self.count % size
        read = list(listed.order_by(*self._order(False))[: shown + 1])
        return read[:shown][::-1], len(read) > shown, False

    def _decode(self, cursor: str) -> tuple[str, tuple[Any, ...]]:
        try:
            text = base64.urlsafe_b64decode(cursor.encode("ascii") + b"==").decode("ascii")
        except (UnicodeError, ValueError) as error:
            raise NotFound(self.invalid_cursor_message) from error
        parts = r"\.".join(f"({PLACE_PARTS[kind][0]})" for _, kind in self.order)
        parsed = re.fullmatch(f"{re.escape(self.cursor_tag)}([ab]){parts}", text)
        if parsed is None:
            raise NotFound(self.invalid_cursor_message)
        place = tuple(
            PLACE_PARTS[kind][2](part)
            for (_, kind), part in zip(self.order, parsed.groups()[1:], strict=True)
        )
        if None in place:
            raise NotFound(self.invalid_cursor_message)
        return parsed[1], place

    def _cursor(self, way: str, place: tuple[Any, ...]) -> str:
        written = ".".join(
            PLACE_PARTS[kind][1](value) for (_, kind), value in zip(self.order, place, strict=True)
        )
        cursor = base64.urlsafe_b64encode(f"{self.cursor_tag}{way}{written}".encode("ascii"))
        return cursor.decode().rstrip("=")

    def _link(self, way: str, place: tuple[Any, ...]) -> str:
        url = remove_query_param(self.request.build_absolute_uri(), self.page_query_param)
        return replace_query_param(url, self.cursor_query_param, self._cursor(way, place))

    def get_next_link(self) -> str | None:
        if not self.has_next or self.last is None:
            return None
        return self._link(AFTER, self.last)

    def get_previous_link(self) -> str | None:
        if not self.has_previous or self.first is None:
            return None
        return self._link(BEFORE, self.first)

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        response = super().get_paginated_response_schema(schema)
        example = self._cursor(AFTER, tuple(EXAMPLE_PLACE[kind] for _, kind in self.order))
        for link in ("next", "previous"):
            response["properties"][link]["example"] = (
                f"http://api.example.org{self.example_path}?{self.cursor_query_param}={example}"
            )
        return response

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        # A client built from the schema learnt of the depth limit only from a 400.
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["description"] = (
                    f"a page number (1, 2, ...) or `last`; a page by number starts at most "
                    f"{MAX_PAGE_OFFSET:,} rows down (deeper is a 400): follow `next` to go on"
                )
        return [
            *parameters,
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": self.cursor_query_description,
                "schema": {"type": "string"},
            },
        ]


class RunPagination(KeysetPagination):
    """The run logs, newest first (`queued_at`, then id: runs queued in the same microsecond,
    a batch of beat's ticks); each page a walk of run_history_idx or run_queued_at_idx.

    `count` is exact up to EXACT_RUN_COUNT_LIMIT runs, estimated past it. `queryset` is of
    run ids (PageReadByIds)."""

    django_paginator_class = RunCountPaginator
    order = (("queued_at", datetime), ("id", int))
    example_path = "/runs/"
    deeper_hint = "or narrow the list by date with `since` and `until`"


class DeliveryPagination(KeysetPagination):
    """An import's notifications, newest first (`created_at`, then id), along
    delivery_log_idx: an hourly import makes thousands a year, and retention deletes the old
    ones while a client reads."""

    order = (("created_at", datetime), ("id", int))
    cursor_tag = "d"
    example_path = "/imports/7/deliveries/"


class HistoryPagination(KeysetPagination):
    """An import's history, newest first (auditlog's `timestamp`, then id): retention deletes
    its run events while a client reads (history.entries_for)."""

    order = (("timestamp", datetime), ("id", int))
    cursor_tag = "h"
    example_path = "/imports/7/history/"


class ImportPagination(KeysetPagination):
    """The imports, by id (their primary key's index): imports are created and deleted while
    a client reads."""

    order = (("id", int),)
    descending = False
    cursor_tag = "i"
    example_path = "/imports/"


# A record's key is at most 2,048 bytes (tasks.engine.validate): no cursor points past one longer.
MAX_CURSOR_KEY = 2048
# A cursor holds its key up to this long, else its record's id (RecordCursorPagination).
KEY_IN_CURSOR = 200
BY_KEY, BY_ID = "k:", "i:"
EARLIER_RELEASES_CURSOR = (
    "this cursor is from an earlier release of importbeat, which paged records otherwise: "
    "start again from the first page"
)


class RecordCursorPagination(CountedLinks, StrictPageSize, pagination.CursorPagination):
    """Records can number millions: a cursor stays fast on any page, an offset would not.

    `count` is kept so that every list answers the same shape: the dataset's own count of its
    records when the view lists them all (`view.whole_count`), else exact up to
    EXACT_COUNT_LIMIT and estimated past it, as the other lists. Counting ten million records
    took seconds on every page.
    """

    # By key, along the (dataset, key) index that the merges keep anyway: by id, the first
    # page of a dataset loaded after a large one walked the table's ids past every record of
    # the earlier one (222 ms behind 1.5 million, 748 ms behind 5 million, growing with what
    # every user loaded before), and an index of (dataset, id) would cost every load a write.
    ordering = "key"
    max_page_size = 1000

    def decode_cursor(self, request):
        cursor = super().decode_cursor(request)
        if cursor is None or cursor.position is None:
            return cursor
        position = str(cursor.position)
        if position.startswith(BY_ID):
            # A long key's cursor names its record (encode_cursor): its key is looked up.
            record = position.removeprefix(BY_ID)
            key = None
            if _whole_number(record) and int(record) <= rows.MAX_ID:
                key = self._scope.filter(pk=int(record)).values_list("key", flat=True).first()
            if key is None:
                raise NotFound("the record this cursor points at was deleted: start again")
            return cursor._replace(position=key)
        if not position.startswith(BY_KEY):
            # The previous release's cursors held a record id: read as a key, a client paging
            # through the upgrade got records from the wrong place, without a word.
            raise NotFound(EARLIER_RELEASES_CURSOR)
        position = position.removeprefix(BY_KEY)
        # The position is compared with the key column: a forged one must be a 404 like any
        # other invalid cursor, not a 500 (PostgreSQL's text holds no NUL).
        if "\x00" in position or len(position) > MAX_CURSOR_KEY:
            raise NotFound(self.invalid_cursor_message)
        return cursor._replace(position=position)

    def encode_cursor(self, cursor):
        # A key may hold 2,048 bytes: percent-encoded, then base64, in the link, a long one
        # made a `next` link gunicorn refuses (414, past 4,094 bytes), and paging stopped
        # there. Such a cursor names the record instead, by id.
        position = cursor.position
        if position is not None and len(position) > KEY_IN_CURSOR:
            record = self._scope.filter(key=position).values_list("pk", flat=True).first()
            if record is not None:
                return super().encode_cursor(cursor._replace(position=f"{BY_ID}{record}"))
        if position is not None:
            position = f"{BY_KEY}{position}"
        return super().encode_cursor(cursor._replace(position=position))

    def paginate_queryset(self, queryset, request, view=None):
        whole = getattr(view, "whole_count", None)
        self.count = whole if whole is not None else bounded_count(queryset)
        self._scope = queryset
        return super().paginate_queryset(queryset, request, view)

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        response = super().get_paginated_response_schema(schema)
        response["properties"] = {
            "count": {"type": "integer", "example": 123},
            **response["properties"],
        }
        response["required"] = ["count", "next", "previous", "results"]
        return response


def _whole_number(text: str) -> bool:
    """ASCII digits only, and not thousands of them: `isdigit()` also takes `²` and `¹`, which
    int() refuses, as it refuses more than 4,300 digits (each was a 500)."""
    return text.isascii() and text.isdigit() and len(text) <= 100
