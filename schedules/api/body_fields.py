"""Request bodies: a field the endpoint does not write is a 400, never silently ignored.

`PATCH /imports/{id}/ {"status": "paused"}` answered 200 and the import stayed active, so its
2 AM run went ahead; `{"cron_expresion": ...}` (misspelt) answered 200 and the schedule
stayed as it was; `PATCH /me {"emial": ...}` kept the old address the alerts go to. As the
query parameters are (filters.check_query_params), the fields a body may hold are what the
endpoint writes, and the 400 names them. A read-only field is refused too, with what changes
it instead. A `PUT` sends back the representation a `GET` gave: its read-only fields are taken
as they came when the server moves them itself (the counters, the next runs: a GET a minute
old has them stale), and when they are unchanged; one a user changes elsewhere (`status`) is
refused when it differs, as in a PATCH.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.fields import SkipField

# What changes a read-only field, where something does.
CHANGED_INSTEAD = {
    "status": "pause, resume or cancel the import with POST /imports/{id}/pause, /resume or "
    "/cancel",
    "owner": "an import stays with the user who created it",
    "next_run_at": "it follows the schedule: change cron_expression or interval_seconds",
    "id": "the import a PUT changes is the one its path names",
}

# The read-only fields a PUT may send only as they are: nothing but a user's doing elsewhere
# changes them, so a different value is a change asked for. `PUT {"status": "paused"}` answered
# 200 and the import stayed active, its runs went ahead.
COMPARED_IN_A_PUT = frozenset({"id", "owner", "status", "username", "is_staff"})


def check_body_fields(
    data: Any,
    writable: Collection[str],
    read_only: Collection[str] = (),
    *,
    current: Mapping[str, Any] | None = None,
) -> None:
    """400 naming each field of the body `data` that is not in `writable`: an unknown one with
    the fields the endpoint takes, a read-only one with what changes it instead. In a PUT,
    `current` holds what the object has now of the read-only fields in COMPARED_IN_A_PUT: a
    read-only field is refused only when it is one of them and differs."""
    if not isinstance(data, Mapping):
        if not writable and data not in (None, "", [], {}):
            # An endpoint without a serializer: a list or a string was taken in silence.
            raise serializers.ValidationError({"non_field_errors": ["this endpoint takes no body"]})
        return  # not an object: the serializer says what it expected
    errors: dict[str, list[str]] = {}
    for name in sorted(set(data) - set(writable)):
        if name in read_only:
            if current is None or (name in current and data[name] != current[name]):
                changed_by = CHANGED_INSTEAD.get(name, "the server sets it")
                errors[name] = [f"read-only; {changed_by}"]
        elif writable:
            errors[name] = [f"unknown field; this endpoint takes: {', '.join(sorted(writable))}"]
        else:
            errors[name] = ["unknown field; this endpoint takes no body"]
    if errors:
        raise serializers.ValidationError(errors)


# A serializer whose body may hold only the fields it writes (check_body_fields). (A comment,
# not a docstring: the schema would show it as the description of every serializer that has
# none of its own.)
class RefusesUnknownFields:
    def to_internal_value(self, data: Any) -> Any:
        if self.root is self and isinstance(data, Mapping):  # type: ignore[attr-defined]
            fields = self.fields.items()  # type: ignore[attr-defined]
            read_only = {name for name, field in fields if field.read_only}
            put = self.instance is not None and not self.partial  # type: ignore[attr-defined]
            check_body_fields(
                data,
                writable={name for name, field in fields if not field.read_only},
                read_only=read_only,
                current=self._shown_now(read_only & COMPARED_IN_A_PUT & set(data)) if put else None,
            )
        return super().to_internal_value(data)  # type: ignore[misc]

    def _shown_now(self, names: set[str]) -> dict[str, Any]:
        """These fields of the instance as a GET shows them (DRF's to_representation, field by
        field: the whole of it reads the next runs and the active run)."""
        shown = {}
        for name in names:
            field = self.fields[name]  # type: ignore[attr-defined]
            try:
                attribute = field.get_attribute(self.instance)  # type: ignore[attr-defined]
            except SkipField:
                continue
            shown[name] = None if attribute is None else field.to_representation(attribute)
        return shown
