"""One error shape for the whole API.

Every error answers `{"detail": "..."}`; a validation error (400) adds
`"errors": {field: [messages]}`, whether it came from a serializer, a filter or a model rule
(`django.core.exceptions.ValidationError` raised by schedules.services).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

INVALID = "Invalid input."


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": summary(exc.detail), "errors": field_errors(exc.detail)}
    elif not isinstance(response.data, dict) or "detail" not in response.data:
        response.data = {"detail": str(exc)}
    if response.status_code == 400 and "errors" not in response.data:
        # Every 400 is {"detail", "errors"} (SPEC): a body that is no JSON (ParseError) came
        # with `detail` alone, and a client reading `errors` of each 400 failed on it.
        response.data = {**response.data, "errors": {}}
    return response


def field_errors(detail: Any) -> dict[str, list[str]]:
    """Flatten DRF's nested error detail to `{field: [messages]}` (nested paths dotted)."""
    if not isinstance(detail, dict):
        detail = {"non_field_errors": detail}
    errors: dict[str, list[str]] = {}
    for field, value in detail.items():
        _collect(str(field), value, errors)
    return errors


def _collect(path: str, value: Any, errors: dict[str, list[str]]) -> None:
    if isinstance(value, dict):
        for key, nested in value.items():
            _collect(f"{path}.{key}", nested, errors)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict | list):
                _collect(f"{path}.{index}", item, errors)
            else:
                errors.setdefault(path, []).append(str(item))
    else:
        errors.setdefault(path, []).append(str(value))


def summary(detail: Any) -> str:
    """A one-line `detail`: the first message, prefixed by its field."""
    for field, messages in field_errors(detail).items():
        if messages:
            prefix = "" if field == "non_field_errors" else f"{field}: "
            return f"{prefix}{messages[0]}"
    return INVALID
