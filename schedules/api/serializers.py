"""Typed serializers of the API. Writes go through schedules.services, never `.save()` here."""

from __future__ import annotations

import copy
import datetime
import unicodedata
from collections.abc import Callable
from functools import cached_property
from operator import attrgetter
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, models
from drf_spectacular.utils import extend_schema_field
from rest_framework import ISO_8601, serializers
from rest_framework.fields import SkipField
from rest_framework.relations import PKOnlyObject
from rest_framework.serializers import as_serializer_error
from rest_framework.settings import api_settings

from schedules import display, services
from schedules.models import (
    Dataset,
    ImportRun,
    NotificationDefaults,
    NotificationDelivery,
    Record,
    ScheduledImport,
    active_run_order,
)
from schedules.validation import (
    NOTIFY_CHANNELS,
    NOTIFY_EVENTS,
    NOTIFY_FIELDS,
    edit_errors,
    validate_callback_url_form,
    validate_columns,
)

from . import progress
from .body_fields import RefusesUnknownFields

NUL = "\x00"


def _reject_nul(value: Any) -> None:
    """PostgreSQL cannot store NUL in text or jsonb; refuse it as input, not as a 500."""
    if isinstance(value, str) and NUL in value:
        raise serializers.ValidationError("must not contain NUL characters")
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_nul(key)
            _reject_nul(item)
    if isinstance(value, list):
        for item in value:
            _reject_nul(item)


class DateTimeField(serializers.DateTimeField):
    """A time in UTC, the API's time zone (settings.TIME_ZONE, never switched per request).

    DRF looks the current time zone up again for every value it shows, through thread-local
    storage: a tenth of a page of runs. Named once here, the answer is the same.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("default_timezone", datetime.UTC)
        super().__init__(**kwargs)
        self._iso_utc = self.timezone is datetime.UTC and self._iso_output()

    def _iso_output(self) -> bool:
        output_format = getattr(self, "format", api_settings.DATETIME_FORMAT)
        return isinstance(output_format, str) and output_format.lower() == ISO_8601

    def to_representation(self, value: Any) -> Any:
        # DRF's answer for an aware time, the API's every time, without its checks of the
        # format, the zone and awareness again for each value: a page of runs shows 400 of them.
        if self._iso_utc and type(value) is datetime.datetime and value.utcoffset() is not None:
            text = value.astimezone(datetime.UTC).isoformat()
            return text[:-6] + "Z" if text.endswith("+00:00") else text
        return super().to_representation(value)


def reader(serializer: serializers.ModelSerializer, field: serializers.Field) -> tuple:
    """(name, read, show) of one shown field: what DRF's `Serializer.to_representation` does
    for it, without its per-value checks where the model says they cannot matter."""
    if isinstance(field, serializers.SerializerMethodField):
        return field.field_name, getattr(serializer, field.method_name), None
    if plain_path(serializer.Meta.model, field.source_attrs):
        return field.field_name, attrgetter(field.source), field.to_representation

    def read(instance: Any) -> Any:
        value = field.get_attribute(instance)
        if isinstance(value, PKOnlyObject) and value.pk is None:
            return None
        return value

    return field.field_name, read, field.to_representation


def plain_path(model: type[models.Model], attrs: list[str]) -> bool:
    """True when `attrs` walks non-null foreign keys to a concrete column: getattr alone reads
    it (no callable to call, no missing object to stand in for)."""
    if not attrs:
        return False
    for position, attr in enumerate(attrs):
        try:
            model_field = model._meta.get_field(attr)
        except FieldDoesNotExist:
            return False
        if not getattr(model_field, "concrete", False):
            return False
        if position == len(attrs) - 1:
            # A foreign key read by its column (`scheduled_import_id`) is a plain value too.
            return not model_field.is_relation or attr == model_field.attname != model_field.name
        if not model_field.many_to_one or model_field.null:
            return False
        model = model_field.related_model
    return True


# What a shown field's to_representation may read besides its own settings: the request
# (hyperlinks, file URLs) or a nested serializer's context.
REQUEST_BOUND = (
    serializers.BaseSerializer,
    serializers.HyperlinkedRelatedField,
    serializers.FileField,
)
_SHARED_READERS: dict[type, list[tuple] | None] = {}


def shared_readers(serializer_class: type[serializers.ModelSerializer]) -> list[tuple] | None:
    """(name, read, show, method name) of each shown field of `serializer_class`, built once
    per process; None where a field's showing may depend on the request (REQUEST_BOUND).

    DRF builds a serializer's fields anew for each instance (declared ones deep-copied, the
    model's mapped again): a tenth of `GET /imports/`, for fields whose showing reads nothing
    but their own settings. They are built here once, from an instance without context; a
    method field is bound to each serializer in turn (it may read the request).
    """
    if serializer_class not in _SHARED_READERS:
        template = serializer_class()
        shown = [field for field in template.fields.values() if not field.write_only]
        readers = None
        if not any(_request_bound(field) for field in shown):
            readers = []
            for field in shown:
                name, read, show = reader(template, field)
                is_method = isinstance(field, serializers.SerializerMethodField)
                method = field.method_name if is_method else None
                readers.append((name, None if method else read, show, method))
        _SHARED_READERS[serializer_class] = readers
    return _SHARED_READERS[serializer_class]


def _request_bound(field: serializers.Field) -> bool:
    if isinstance(field, serializers.ManyRelatedField):
        field = field.child_relation
    return isinstance(field, REQUEST_BOUND)


# DRF's, with UTC times (DateTimeField) and its shown fields listed once per process
# (shared_readers): a list serializes every row with the same child serializer, and DRF walks the
# child's fields again for each row to find the readable ones, after building them for each
# answer. Each field is then read the shortest way its model allows
# (reader): DRF's checks of every value (a callable to call, a missing object, a primary key
# only) were a sixth of the CPU of a page of runs; the answers are the same
# (tests/test_api_answers_are_what_drf_would_show.py). (A comment, not a docstring: the schema
# would show it as the description of every serializer that has none of its own.)
class ModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.DateTimeField: DateTimeField,
    }

    @cached_property
    def _readable_fields(self) -> list[serializers.Field]:
        return [field for field in self.fields.values() if not field.write_only]

    @cached_property
    def _readers(self) -> list[tuple[str, Callable[[Any], Any], Callable[[Any], Any] | None]]:
        shared = shared_readers(type(self))
        if shared is None:
            return [reader(self, field) for field in self._readable_fields]
        return [
            (name, getattr(self, method) if method else read, show)
            for name, read, show, method in shared
        ]

    def to_representation(self, instance: Any) -> dict[str, Any]:
        row = {}
        for name, read, show in self._readers:
            try:
                value = read(instance)
            except SkipField:
                continue
            row[name] = value if show is None or value is None else show(value)
        return row


class ChoiceField(serializers.ChoiceField):
    """A choice that, given anything else, names the valid ones (DRF's says only "not valid")."""

    default_error_messages = {
        "invalid_choice": '"{input}" is not a valid choice; use one of: {choices}.'
    }

    def fail(self, key: str, **kwargs: Any) -> None:
        if key == "invalid_choice":
            kwargs["choices"] = ", ".join(map(str, self.choice_strings_to_values))
        super().fail(key, **kwargs)


class ColumnSerializer(serializers.Serializer):
    """Documents one entry of `columns` (validated as a whole by schedules.validation)."""

    name = serializers.CharField()
    type = ChoiceField(
        choices=["text", "int", "decimal", "bool", "date", "datetime"], default="text"
    )
    required = serializers.BooleanField(default=False)


@extend_schema_field(ColumnSerializer(many=True))
class ColumnsField(serializers.JSONField):
    """`columns` as given (schedules.validation checks it), documented as a list of columns."""


class ActiveRunSerializer(ModelSerializer):
    """A run in brief: what an import shows of its run in progress (the full run, RunSerializer,
    is at `/runs/{id}/`)."""

    progress = serializers.SerializerMethodField(
        help_text="bytes_read / bytes_total while running (null when the size is unknown)"
    )

    class Meta:
        model = ImportRun
        fields = ["id", "status", "attempts", "queued_at", "started_at", "progress"]
        read_only_fields = fields

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_progress(self, run: ImportRun) -> float | None:
        return progress.fraction(run)


@extend_schema_field(
    {
        "type": "object",
        "nullable": True,
        "description": 'write: {"kind": "basic", "username", "password"} | {"kind": "bearer", '
        '"token"} | {"kind": "header", "name", "value"} (http) | {"kind": "password", '
        '"password"} | {"kind": "private_key", "private_key", "passphrase"} (sftp); null '
        'removes it. Read: {"kind", "set": true, "origin"} only, never the secret.',
    }
)
class CredentialField(serializers.Field):
    """Write-only in substance: what is written is a secret, what is read is that one is set."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", required=False, **kwargs)

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if data is None:
            return True, {"credential": None}  # removes the credential
        return super().validate_empty_values(data)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError("a credential is an object with a 'kind' and parts")
        if not data:
            # The model's setter read {} as a removal: a client's empty object dropped the
            # credential without a word.
            raise serializers.ValidationError(
                "a credential needs a kind and its parts (null removes it)"
            )
        if self._as_read(data):
            return {}  # the credential as a GET showed it, sent back by a PUT: kept as it is
        return {"credential": data}

    def _as_read(self, data: dict[str, Any]) -> bool:
        """Whether `data` is the read form of the credential the import holds: a PUT takes back
        the whole representation a GET gave, and this part of it was refused ("unknown parts
        for a bearer credential: ['origin', 'set']")."""
        imp = getattr(self.parent, "instance", None)
        held = imp.credential if isinstance(imp, ScheduledImport) else None
        return (
            held is not None
            and data.get("set") is True
            and set(data) <= set(held)
            and all(data[part] == held[part] for part in data)
        )

    def to_representation(self, imp: ScheduledImport) -> dict[str, Any] | None:
        return imp.credential


class CallbackUrlField(serializers.URLField):
    """DRF's URLField, whose check of the URL's form is the callback's own
    (schedules.validation.validate_callback_url_form)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators = [
            *(kept for kept in self.validators if not isinstance(kept, URLValidator)),
            validate_callback_url_form,
        ]


class ImportSerializer(RefusesUnknownFields, ModelSerializer):
    serializer_choice_field = ChoiceField
    serializer_field_mapping = {
        **ModelSerializer.serializer_field_mapping,
        models.URLField: CallbackUrlField,  # callback_url, the one URLField
    }
    dataset = serializers.SlugField(
        max_length=100, source="dataset.name", help_text="where the rows land (created if new)"
    )
    columns = ColumnsField(required=False, help_text="optional row validation")
    owner = serializers.CharField(source="owner.username", read_only=True)
    schedule_description = serializers.SerializerMethodField(
        help_text="the schedule in words, with its time zone"
    )
    next_run_at = serializers.SerializerMethodField(
        help_text="the tick of the next run beat makes, in UTC: the first of next_runs; null "
        "when the import is not active"
    )
    next_runs = serializers.SerializerMethodField(
        help_text="the next 5 ticks, in UTC, each as beat fires it. A tick due within the grace "
        "period (MISSED_TICK_GRACE_SECONDS) is still listed; older ones, missed while no beat "
        "ran (late, missed_ticks), are not: catchup skip runs none of them, coalesce runs them "
        "once, listed first as the latest missed tick, when beat is back"
    )
    success_rate = serializers.FloatField(read_only=True, allow_null=True)
    late = serializers.SerializerMethodField(
        help_text="a tick was missed, or the next one is overdue past the grace period"
    )
    notify_on = serializers.ListField(
        child=ChoiceField(choices=NOTIFY_EVENTS),
        required=False,
        help_text="events that notify: a run failed, partial, succeeded (data landed), "
        "recovered (the first good run after failures), and the import turning late",
    )
    notify_channels = serializers.ListField(
        child=ChoiceField(choices=NOTIFY_CHANNELS),
        required=False,
        help_text="email (your address, PATCH /me) and webhook (callback_url, signed)",
    )
    webhook_secret = serializers.SerializerMethodField(
        help_text="signs this import's webhooks (Importbeat-Signature); shown to its owner only"
    )
    active_run = serializers.SerializerMethodField(
        help_text="the run queued, running or retrying now, if any: one call tells whether the "
        "import is running"
    )
    credential = CredentialField(allow_null=True, help_text="the source's credential")
    host_key_fingerprint = serializers.CharField(
        read_only=True, help_text="SFTP: the pinned host key's SHA256 fingerprint"
    )
    offered_host_key_fingerprint = serializers.CharField(
        read_only=True,
        help_text="SFTP: a different key the server showed; runs fail until it is accepted "
        "(POST /imports/{id}/accept-host-key)",
    )

    class Meta:
        model = ScheduledImport
        fields = [
            "id", "owner", "name", "description", "source_url", "source_member",
            "move_processed", "credential", "host_key_fingerprint",
            "offered_host_key_fingerprint", "delimiter", "encoding", "has_header", "dataset",
            "key_column", "columns", "mode",
            "schedule_type", "cron_expression", "interval_seconds", "timezone",
            "schedule_description", "next_run_at", "next_runs",
            "max_retries", "retry_backoff_seconds", "retry_backoff_max_seconds",
            "timeout_seconds", "overlap", "catchup", "alert_after_failures", "callback_url",
            "notify_on", "notify_channels", "webhook_secret",
            "status", "total_runs", "successful_runs", "partial_runs", "failed_runs",
            "consecutive_failures", "success_rate", "last_run_at", "last_run_status",
            "last_success_at", "late",
            "late_since", "missed_ticks", "active_run", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = [
            "status", "total_runs", "successful_runs", "partial_runs", "failed_runs",
            "consecutive_failures", "last_run_at", "last_run_status", "last_success_at",
            "late_since", "missed_ticks", "created_at", "updated_at",
        ]  # fmt: skip
        # A tab (a TSV file, the delimiter the check before save suggests for one) is one
        # character: DRF's trimming made it blank, "This field may not be blank".
        extra_kwargs = {"delimiter": {"trim_whitespace": False}}

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_webhook_secret(self, imp: ScheduledImport) -> str | None:
        request = self.context.get("request")
        return imp.webhook_secret if request and request.user.pk == imp.owner_id else None

    def get_late(self, imp: ScheduledImport) -> bool:
        return imp.is_late()

    @extend_schema_field(ActiveRunSerializer(allow_null=True))
    def get_active_run(self, imp: ScheduledImport) -> dict[str, Any] | None:
        # Lists prefetch it (ImportViewSet.get_queryset); a single import asks once.
        runs = getattr(imp, "active_runs", None)
        if runs is None:
            active = imp.runs.filter(status__in=ImportRun.ACTIVE_STATUSES)
            runs = list(active.order_by(*active_run_order())[:1])
        return self._active_run.to_representation(runs[0]) if runs else None

    @extend_schema_field(DateTimeField(allow_null=True))
    def get_next_run_at(self, imp: ScheduledImport) -> str | None:
        # Not the column: beat keeps there the first tick it has not dispatched, however old.
        first = display.next_run(imp)  # (next_run_listed, kept per schedule: a list's rows)
        return self._tick.to_representation(first) if first is not None else None

    @extend_schema_field(serializers.ListField(child=DateTimeField()))
    def get_next_runs(self, imp: ScheduledImport) -> list[str]:
        if imp.status != ScheduledImport.Status.ACTIVE:
            return []
        return [self._tick.to_representation(tick) for tick in display.next_ticks(imp, 5)]

    # Made once per answer, not once per import of a list (DRF builds a serializer's fields
    # anew each time one is made).
    @cached_property
    def _active_run(self) -> ActiveRunSerializer:
        return ActiveRunSerializer()

    @cached_property
    def _tick(self) -> DateTimeField:
        return DateTimeField()

    def get_schedule_description(self, imp: ScheduledImport) -> str:
        return display.schedule_words(imp)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        _check_nul(data)
        return super().to_internal_value(data)

    def validate_columns(self, columns: Any) -> list[dict[str, Any]]:
        try:
            validate_columns(columns)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages) from error
        return columns

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The rules that read fields the body may not send, on the import as the request read
        it; services.update_import checks them again on the import locked.

        A schedule field of the other schedule type is refused, not dropped: the model keeps
        only the fields of its schedule type (drop_other_schedule), so `PATCH
        {"cron_expression": "0 3 * * *"}` on an interval import answered 200 and it went on
        running every hour. Notifications asked for that no channel can deliver are refused.
        """
        defaults = {name: ScheduledImport._meta.get_field(name).get_default()
                    for name in NOTIFY_FIELDS}  # fmt: skip
        if errors := edit_errors(self.instance, attrs, defaults):
            raise serializers.ValidationError(errors)
        return attrs

    def validate_name(self, name: str) -> str:
        # One spelling of a name however it was typed (NFC): `café` and `cafe` + a combining
        # accent were two imports of one name, which names unique per owner are not to be.
        name = unicodedata.normalize("NFC", name)
        owner = self.instance.owner if self.instance else self.context["request"].user
        taken = ScheduledImport.objects.filter(owner=owner, name=name)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise serializers.ValidationError("you already have an import with this name")
        return name

    def create(self, validated: dict[str, Any]) -> ScheduledImport:
        dataset = validated.pop("dataset")["name"]
        return self._apply(services.create_import, self.context["request"].user, dataset, validated)

    def update(self, imp: ScheduledImport, validated: dict[str, Any]) -> ScheduledImport:
        dataset = validated.pop("dataset", {}).get("name")
        request = self.context.get("request")
        if_version = request.headers.get("If-Match") if request is not None else None
        if if_version is not None:
            validated = {**validated, "if_version": if_version}
        return self._apply(services.update_import, imp, dataset, validated)

    def preview(self) -> ScheduledImport:
        """The import as saving would make it, validated by the same rules, not saved."""
        fields = {k: v for k, v in self.validated_data.items() if k != "dataset"}
        if self.instance is not None:
            imp = copy.copy(self.instance)
        else:
            imp = ScheduledImport(owner=self.context["request"].user)
        for name, value in fields.items():
            setattr(imp, name, value)
        if "dataset" in self.validated_data:
            # The dataset saving would write to, its key checked as saving checks it (None: one
            # saving would create, empty).
            name = self.validated_data["dataset"]["name"]
            imp.dataset = services.existing_dataset(imp.owner, name)
        try:
            imp.full_clean(exclude=["owner", "dataset", "periodic_task"], validate_unique=False)
        except DjangoValidationError as error:
            raise serializers.ValidationError(as_serializer_error(error)) from error
        return imp

    @staticmethod
    def _apply(service, target, dataset: str | None, fields: dict[str, Any]) -> ScheduledImport:
        # Model rules (cron ranges, time zone, interval minimum, ...) are checked by the
        # service through schedules.validation; surface them as 400s keyed by field.
        try:
            return service(target, dataset=dataset, **fields)
        except DjangoValidationError as error:
            raise serializers.ValidationError(as_serializer_error(error)) from error
        except IntegrityError as error:
            # Two concurrent creates of the same name: the unique constraint decides.
            raise serializers.ValidationError(
                {"name": ["you already have an import with this name"]}
            ) from error


def _check_nul(data: Any) -> None:
    if isinstance(data, dict):
        errors = {}
        for key, value in data.items():
            try:
                _reject_nul(value)
            except serializers.ValidationError as error:
                errors[key] = error.detail
        if errors:
            raise serializers.ValidationError(errors)


class RunSerializer(ActiveRunSerializer):
    import_id = serializers.IntegerField(source="scheduled_import_id", read_only=True)
    import_name = serializers.CharField(source="scheduled_import.name", read_only=True)
    # (null for a scheduled run: the schema said a string, and typed clients failed on it)
    triggered_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = ImportRun
        fields = [
            "id", "import_id", "import_name", "trigger", "triggered_by", "scheduled_for",
            "status", "queued_at", "started_at", "finished_at", "duration_ms", "attempts",
            "rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_deleted",
            "rows_failed", "bytes_read", "bytes_total", "progress", "error_message", "worker",
            "celery_task_id", "file_digest", "source_file", "cancel_requested_at", "retry_of",
        ]  # fmt: skip
        read_only_fields = fields


def columns_read(serializer_class: type[serializers.ModelSerializer]) -> list[str]:
    """The columns `serializer_class` shows, as `QuerySet.only()` paths.

    A list of runs selected every column of each run and of its import (error details, the
    import's fifty fields, its credential) to show twenty-eight of them: at a full page that
    was a third of the request. Method fields are left out: they read what the serializer's
    other fields already load (a run's progress: its status and byte counts).
    """
    columns = []
    for field in serializer_class().fields.values():
        if field.write_only or isinstance(field, serializers.SerializerMethodField):
            continue
        path = "__".join(field.source_attrs)
        if isinstance(field, serializers.SlugRelatedField):
            path = f"{path}__{field.slug_field}"
        columns.append(path)
    return columns


class RunDetailSerializer(RunSerializer):
    """One run: its errors (row errors with line, column, value, reason; per-attempt failures)
    and its live progress, read from the task state while it runs."""

    error_details = serializers.JSONField(read_only=True)

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "error_details"]
        read_only_fields = fields

    def to_representation(self, run: ImportRun) -> dict[str, Any]:
        progress.refresh_live(run)
        data = super().to_representation(run)
        request = self.context.get("request")
        if not (request and request.user.is_staff) and isinstance(data["error_details"], dict):
            data["error_details"] = {
                k: v for k, v in data["error_details"].items() if k not in STAFF_ONLY_DETAILS
            }
        return data


# Kept from an owner's view of a run: an unexpected error's traceback (it names code and
# internals), and the marks of the cluster's own bookkeeping, whose words are in the run's
# error_message while they hold (a run parked in its owner's line, a retry or a first message
# the broker refused); a mark left on a run cancelled meanwhile said nothing true to its owner.
STAFF_ONLY_DETAILS = frozenset(
    {
        "traceback", services.PARKED_BY, services.RETRY_NOT_SENT, services.MESSAGE_NOT_SENT,
        services.LOST_TASK_END,
    }
)  # fmt: skip


class ActiveRunConflictSerializer(serializers.Serializer):
    """A 409 of a trigger or a retry: the run in the way, when one is (a retry of a run that
    cannot be retried answers `detail` alone, which the schema required the others of)."""

    detail = serializers.CharField()
    active_run_id = serializers.IntegerField(required=False)
    active_run = RunSerializer(required=False)


class DatasetInUseSerializer(serializers.Serializer):
    detail = serializers.CharField()
    imports = serializers.ListField(child=serializers.IntegerField(), help_text="their ids")


class DatasetSerializer(ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    record_count = serializers.IntegerField(read_only=True)
    imports = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Dataset
        fields = ["name", "owner", "record_count", "key_column", "imports", "created_at"]


class RecordSerializer(ModelSerializer):
    content_hash = serializers.SerializerMethodField()
    # (null for a record written outside a run: the schema said an integer)
    first_seen_run = serializers.IntegerField(
        source="first_seen_run_id", read_only=True, allow_null=True
    )
    last_changed_run = serializers.IntegerField(
        source="last_changed_run_id", read_only=True, allow_null=True
    )

    class Meta:
        model = Record
        fields = [
            "key", "data", "content_hash", "first_seen_run", "last_changed_run",
            "created_at", "updated_at",
        ]  # fmt: skip

    def get_content_hash(self, record: Record) -> str:
        """The 64-bit hash as 16 hex digits: a JSON number would lose bits in JavaScript."""
        return f"{record.content_hash & 0xFFFF_FFFF_FFFF_FFFF:016x}"


class DeliverySerializer(ModelSerializer):
    """One notification and how its delivery went."""

    run = serializers.IntegerField(source="run_id", allow_null=True, read_only=True)

    class Meta:
        model = NotificationDelivery
        fields = [
            "id", "event", "channel", "target", "status", "attempts", "response_status",
            "error", "run", "created_at", "finished_at", "next_attempt_at",
        ]  # fmt: skip
        read_only_fields = fields


class HistoryEntrySerializer(serializers.Serializer):
    """One change of an import (schedules.history)."""

    at = DateTimeField()
    by = serializers.CharField(allow_null=True, help_text="the user; null for the system")
    via = serializers.CharField(help_text="api, admin, command or system")
    action = serializers.CharField(
        help_text="created, updated, paused, resumed, cancelled, deleted, run triggered, "
        "run retried, run cancelled, next delivery queued (a drop folder's queue)"
    )
    changes = serializers.DictField(
        child=serializers.DictField(allow_null=True), help_text="{field: {from, to}}"
    )
    run = serializers.IntegerField(allow_null=True, help_text="the run, for a run's event")


class MeSerializer(RefusesUnknownFields, ModelSerializer):
    """The caller's account as the API lets them keep it: the e-mail alerts are sent to."""

    email = serializers.EmailField(
        allow_blank=True, max_length=254, help_text="where alerts go; empty: no alert e-mail"
    )

    notify_on = serializers.ListField(
        child=ChoiceField(choices=NOTIFY_EVENTS),
        required=False,
        help_text="what notifies by default on the imports you create from now on",
    )
    notify_channels = serializers.ListField(
        child=ChoiceField(choices=NOTIFY_CHANNELS),
        required=False,
        help_text="how, by default, on the imports you create from now on",
    )

    class Meta:
        model = get_user_model()
        fields = ["username", "email", "is_staff", "notify_on", "notify_channels"]
        read_only_fields = ["username", "is_staff"]

    def validate_email(self, email: str) -> str:
        _reject_nul(email)
        return email

    def to_representation(self, user: Any) -> dict[str, Any]:
        defaults = NotificationDefaults.objects.filter(user=user).first() or NotificationDefaults()
        return {
            **super().to_representation(user),
            "notify_on": defaults.notify_on,
            "notify_channels": defaults.notify_channels,
        }

    def update(self, user: Any, validated: dict[str, Any]) -> Any:
        notifications = {
            k: validated.pop(k) for k in ("notify_on", "notify_channels") if k in validated
        }
        if notifications:
            try:
                services.set_notification_defaults(user, **notifications)
            except DjangoValidationError as error:
                raise serializers.ValidationError(as_serializer_error(error)) from error
        return super().update(user, validated)


class LoginSerializer(RefusesUnknownFields, serializers.Serializer):
    username = serializers.CharField(max_length=150)
    # Kept as typed, spaces included, as Django's login form keeps it: a password that begins
    # or ends with a space signed in to the admin but never got a token.
    password = serializers.CharField(
        max_length=4096, trim_whitespace=False, style={"input_type": "password"}
    )


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="send as `Authorization: Token <token>`")
    expiry = DateTimeField(allow_null=True)
    username = serializers.CharField()


class StatsSerializer(serializers.Serializer):
    """Documents `GET /imports/{id}/stats/`; the numbers come from schedules.stats."""

    import_id = serializers.IntegerField()
    days = serializers.IntegerField()
    since = DateTimeField()
    until = DateTimeField()
    timezone = serializers.CharField()
    total = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())
    success_rate = serializers.FloatField(
        allow_null=True, help_text="succeeded / finished runs (partial is not a success)"
    )
    success_or_partial_rate = serializers.FloatField(
        allow_null=True, help_text="(succeeded + partial) / finished runs"
    )
    duration_ms = serializers.DictField(child=serializers.FloatField(allow_null=True))
    rows = serializers.DictField(child=serializers.IntegerField())
    daily = serializers.ListField(child=serializers.DictField())


class SourceCheckSerializer(serializers.Serializer):
    """What `POST /imports/check` (and `?dry_run=true`) found at the source; nothing is saved."""

    ok = serializers.BooleanField(help_text="a run would find what the import expects")
    columns = serializers.ListField(
        child=serializers.CharField(), help_text="as the file names them"
    )
    rows = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="the first rows, as they would be read",
    )
    bytes_total = serializers.IntegerField(allow_null=True, help_text="the file's size, if told")
    key_column_found = serializers.BooleanField()
    missing_required_columns = serializers.ListField(child=serializers.CharField())
    problems = serializers.ListField(child=serializers.CharField())
    suggestions = serializers.DictField(
        child=serializers.CharField(), help_text='e.g. {"delimiter": ";"} when it fits better'
    )
    host_key_fingerprint = serializers.CharField(
        help_text="SFTP: the SHA256 fingerprint of the server's host key (pinned on a saved "
        "import by its first check or run)"
    )
    source_file = serializers.CharField(help_text="the file a run would take (a glob's newest)")
