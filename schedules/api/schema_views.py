"""The OpenAPI schema and its Swagger UI, refusing query parameters they do not read, as every
endpoint under `/api/` does (SPEC section 5)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from .filters import check_query_params


class ErrorsInJSON:
    """An error answered in JSON, as everywhere under `/api/`, not in the page's format (YAML,
    HTML)."""

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)  # type: ignore[misc]
        self.request.accepted_renderer = JSONRenderer()  # type: ignore[attr-defined]
        self.request.accepted_media_type = JSONRenderer.media_type  # type: ignore[attr-defined]
        return response


class SchemaView(ErrorsInJSON, SpectacularAPIView):
    """`GET /schema/`: YAML, or JSON with `?format=json`; `?lang=` for its texts."""

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        check_query_params(request, {"format", "lang"})
        return super().get(request, *args, **kwargs)


class DocsView(ErrorsInJSON, SpectacularSwaggerView):
    """`GET /docs/`: Swagger UI over the schema."""

    # OPTIONS made DRF render its metadata with the page's HTML renderer, which has no template
    # for it: a 500. The page is read, nothing else.
    http_method_names = ["get", "head"]

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        check_query_params(request, set())
        return super().get(request, *args, **kwargs)
