"""List shapes: `{"count", "next", "previous", "results"}` everywhere."""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db import connections
from django.db.models import QuerySet
from rest_framework import pagination, serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from schedules import rows

# Up to this many rows a list's `count` is exact; past it, PostgreSQL's estimate.
EXACT_COUNT_LIMIT = 10_000
# The runs lists: counting a user's runs joins each to its import, so the exact count stops
# sooner (a thousand rows cost a few milliseconds, ten thousand fifty).
EXACT_RUN_COUNT_LIMIT = 1_000


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

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        # An exact count knows the end without reading; an estimate is read past, as far as
        # PostgreSQL's OFFSET (a bigint) goes: `?page=10**20` was a 500 there.
        if number > self.num_pages and (
            self.count_is_exact or bottom + self.per_page + 1 > rows.MAX_ID
        ):
            raise EmptyPage(self.error_messages["no_results"])
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


class RunPagination(PageNumberPagination):
    """The run logs: `count` is exact up to EXACT_RUN_COUNT_LIMIT runs, estimated past it."""

    django_paginator_class = RunCountPaginator


# A record's key is at most 2,048 bytes (tasks.engine.validate): no cursor points past one longer.
MAX_CURSOR_KEY = 2048
# A cursor holds its key up to this long, else its record's id (RecordCursorPagination).
KEY_IN_CURSOR = 200
BY_KEY, BY_ID = "k:", "i:"
EARLIER_RELEASES_CURSOR = (
    "this cursor is from an earlier release of importbeat, which paged records otherwise: "
    "start again from the first page"
)


class RecordCursorPagination(StrictPageSize, pagination.CursorPagination):
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

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {
                "count": self.count,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        response = super().get_paginated_response_schema(schema)
        response["properties"] = {
            "count": {"type": "integer", "example": 123},
            **response["properties"],
        }
        response["required"] = ["count", "next", "previous", "results"]
        return response


def _whole_number(text: str) -> bool:
    """ASCII digits only: `isdigit()` also takes `²` and `¹`, which int() refuses (a 500)."""
    return text.isascii() and text.isdigit()
