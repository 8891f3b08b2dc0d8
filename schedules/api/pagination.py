"""List shapes: `{"count", "next", "previous", "results"}` everywhere."""

from __future__ import annotations

from typing import Any

from rest_framework import pagination
from rest_framework.exceptions import NotFound
from rest_framework.response import Response


class PageNumberPagination(pagination.PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


class RecordCursorPagination(pagination.CursorPagination):
    """Records can number millions: a cursor stays fast on any page, an offset would not.

    `count` is kept so that every list answers the same shape; it is one indexed count.
    """

    ordering = "id"
    page_size_query_param = "page_size"
    max_page_size = 1000

    def decode_cursor(self, request):
        cursor = super().decode_cursor(request)
        # The position is compared with the id column: a forged one must be a 404 like any
        # other invalid cursor, not a 500.
        position = None if cursor is None else cursor.position
        if position is not None and (not str(position).isdigit() or int(position) >= 2**63):
            raise NotFound(self.invalid_cursor_message)
        return cursor

    def paginate_queryset(self, queryset, request, view=None):
        self.count = queryset.count()
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
