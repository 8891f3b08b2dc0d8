"""The "what and when" of importbeat: imports, their runs, and the datasets they fill."""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import zoneinfo
from datetime import datetime, timedelta
from functools import cache
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import DatabaseError, models, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce, Greatest, Now
from django.dispatch import Signal
from django.utils.timezone import now

from common import database_clock

from . import credentials
from .credentials import KIND_CHOICES
from .exact_json import ExactDecoder
from .rows import LoadedHook
from .ticks import Schedule


class Dataset(models.Model):
    """Where an import's rows land; one owner, a name unique per owner."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="datasets"
    )
    name = models.SlugField(max_length=100)
    created_at = models.DateTimeField(db_default=Now(), default=now)
    # Which file, under which import settings, produced the records as they are now (a SHA-256
    # of both, tasks.engine.digest.applied_key), and that run; blank when unknown. A run
    # fetching that file with those settings has nothing to write and repeats the counts.
    applied_digest = models.CharField(default="", db_default="", max_length=64, blank=True)
    applied_run = models.ForeignKey(
        "ImportRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # How many records it holds, kept by every writer of records in the transaction that writes
    # them, under the dataset's lock (services.lock_datasets): counting them at each read cost
    # 0.6 s a page per two million records (`GET /datasets/`, a records page's `count`).
    record_count = models.BigIntegerField(db_default=0, default=0, editable=False)
    # The column its records are keyed by, as the last merge wrote them; blank when unknown
    # (schedules.dataset_keys: an import keyed otherwise cannot add to them).
    key_column = models.CharField(
        default="", db_default="", max_length=200, blank=True, editable=False
    )
    # The field names its records hold, sorted, kept by every writer of records in the
    # transaction that writes them (services.note_merge): the export's header read them by a
    # scan of every record, 24 µs a wide record (60 fields, stored compressed), past the web's
    # statement limit from about a million of them, so that export answered 503 every time.
    # May name a field no record holds any more (records deleted by hand), never misses one a
    # record holds. NULL: unknown (datasets from before migration 0044, records written behind
    # the writers' backs); the export's first read scans once and keeps what it found.
    fields = ArrayField(models.TextField(), null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            # `GET /datasets/{name}/` looks a dataset up by (owner, name).
            models.UniqueConstraint(fields=["owner", "name"], name="dataset_name_unique_per_owner"),
        ]

    def __str__(self) -> str:
        return self.name

    def keyed_now(self) -> tuple[str, int]:
        """The column its records are keyed by, and how many there are, as the database has
        them now (merges change both after this row was read)."""
        keyed = Dataset.objects.filter(pk=self.pk).values_list("key_column", "record_count")
        return keyed.first() or ("", 0)


def host_key_fingerprint(key: str) -> str:
    """OpenSSH's SHA256 fingerprint of a host key kept as "type base64" ("" for none)."""
    _kind, _sep, blob = key.partition(" ")
    if not blob:
        return ""
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


# django-celery-beat's PeriodicTask.name max_length.
PERIODIC_TASK_NAME_LENGTH = 200


def default_channels() -> list[str]:
    return ["email", "webhook"]


# Fields whose rules hold the operator's settings, which may change after an import is saved
# (ALLOWED_PRIVATE_HOSTS, IMPORT_DROP_DIRS, MIN_INTERVAL_SECONDS): an edit checks them only when
# it changes them. Every edit of an import whose source an operator refused later got a 400 on
# a field it did not send; its runs say the refusal when they connect. A cron rule refused
# since it was saved (a `*` in a list) is so too: it fires as its ticks list.
# Beat's words: ticks counted missed at a change, beat entries put in step with the settings.
beat_logger = logging.getLogger("importbeat.beat")

POLICY_FIELDS = ("source_url", "callback_url", "interval_seconds", "cron_expression")
# Fields that decide which records an import writes and how it keys them: its dataset's key is
# checked when an edit changes one of them (schedules.dataset_keys). An import already keyed
# otherwise than its dataset's records stays editable; its runs say why at their merge.
KEY_FIELDS = ("key_column", "dataset_id", "mode")


class ScheduledImport(LoadedHook, models.Model):
    class ScheduleType(models.TextChoices):
        CRON = "cron"
        INTERVAL = "interval"

    class Mode(models.TextChoices):
        UPSERT = "upsert"
        SYNC = "sync"

    class Overlap(models.TextChoices):
        SKIP = "skip"
        QUEUE = "queue"

    class Catchup(models.TextChoices):
        COALESCE = "coalesce"
        SKIP = "skip"

    class Status(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"
        CANCELLED = "cancelled"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="imports"
    )
    name = models.CharField(max_length=200)
    description = models.TextField(default="", db_default="", blank=True)
    # http(s), sftp, or file:/// in a drop folder (schedules.validation.validate_source_url):
    # not a URLField, whose validator knows web schemes only.
    source_url = models.CharField(max_length=2000)
    # The file to read out of a zip archive that holds several; blank: it must hold one.
    source_member = models.CharField(db_default="", max_length=255, blank=True, default="")
    # Drop folders only: move the file to processed/ beside it once a run committed its rows.
    move_processed = models.BooleanField(db_default=False, default=False)
    delimiter = models.CharField(db_default=",", max_length=1, default=",")
    encoding = models.CharField(db_default="utf-8", max_length=40, default="utf-8")
    has_header = models.BooleanField(db_default=True, default=True)
    # RESTRICT: a dataset an import writes to is not deleted alone (services.delete_dataset says
    # which), but goes with its owner and their imports (PROTECT refused to delete the user).
    dataset = models.ForeignKey(Dataset, on_delete=models.RESTRICT, related_name="imports")
    key_column = models.CharField(max_length=200)
    columns = models.JSONField(db_default=[], default=list, blank=True)
    mode = models.CharField(
        db_default=Mode.UPSERT, max_length=10, choices=Mode.choices, default=Mode.UPSERT
    )

    schedule_type = models.CharField(max_length=10, choices=ScheduleType.choices)
    cron_expression = models.CharField(default="", db_default="", max_length=120, blank=True)
    interval_seconds = models.PositiveIntegerField(null=True, blank=True)
    # Validated against the IANA database in schedules.validation, not by `choices`, so that a
    # tzdata update never needs a migration.
    timezone = models.CharField(db_default="UTC", max_length=64, default="UTC")

    max_retries = models.PositiveSmallIntegerField(db_default=3, default=3)
    retry_backoff_seconds = models.PositiveIntegerField(db_default=30, default=30)
    retry_backoff_max_seconds = models.PositiveIntegerField(db_default=600, default=600)
    timeout_seconds = models.PositiveIntegerField(db_default=3600, default=3600)
    overlap = models.CharField(
        db_default=Overlap.SKIP, max_length=10, choices=Overlap.choices, default=Overlap.SKIP
    )
    catchup = models.CharField(
        db_default=Catchup.COALESCE,
        max_length=10,
        choices=Catchup.choices,
        default=Catchup.COALESCE,
    )
    alert_after_failures = models.PositiveSmallIntegerField(db_default=3, default=3)
    callback_url = models.URLField(default="", db_default="", max_length=2000, blank=True)
    # Which events of a run (and lateness) notify the owner, and how (schedules.notifications);
    # the webhook goes to `callback_url`, signed with `webhook_secret` (HMAC-SHA256).
    notify_on = models.JSONField(db_default=[], default=list, blank=True)
    notify_channels = models.JSONField(
        db_default=["email", "webhook"], default=default_channels, blank=True
    )
    webhook_secret = models.CharField(
        default="", db_default="", max_length=64, blank=True, editable=False
    )
    # The source credential (schedules.credentials): its kind and the origin it was saved for
    # in clear, so every surface says what is set without decrypting; its parts encrypted.
    # Set through the `credential` property, sealed by clean().
    credential_kind = models.CharField(
        default="", db_default="", max_length=20, blank=True, choices=KIND_CHOICES, editable=False
    )
    credential_origin = models.CharField(
        default="", db_default="", max_length=300, blank=True, editable=False
    )
    credential_secret = models.TextField(default="", db_default="", blank=True, editable=False)
    # SFTP: the server's host key ("type base64"), pinned by the first check or run and never
    # replaced by a run; a different key the server offered since waits here for a user to
    # accept it (schedules.host_keys).
    sftp_host_key = models.TextField(default="", db_default="", blank=True, editable=False)
    sftp_offered_host_key = models.TextField(default="", db_default="", blank=True, editable=False)

    status = models.CharField(
        db_default=Status.ACTIVE, max_length=10, choices=Status.choices, default=Status.ACTIVE
    )
    total_runs = models.PositiveIntegerField(db_default=0, default=0)
    # Runs by outcome: `successful_runs` counts `succeeded` only; a `partial` run (some rows
    # rejected) is neither a success nor a failure and is counted apart.
    successful_runs = models.PositiveIntegerField(db_default=0, default=0)
    partial_runs = models.PositiveIntegerField(db_default=0, default=0)
    failed_runs = models.PositiveIntegerField(db_default=0, default=0)
    consecutive_failures = models.PositiveIntegerField(db_default=0, default=0)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_run_status = models.CharField(default="", db_default="", max_length=12, blank=True)
    # When its last `succeeded` run ended: a feed that stopped delivering (a glob's runs are
    # skipped, "no file matches … yet") fails nothing, and this is what shows it (API, admin,
    # /metrics' importbeat_import_last_success_timestamp_seconds, the skipped run's words).
    last_success_at = models.DateTimeField(null=True, blank=True)
    # The next tick beat has not dispatched yet (schedules.ticks decides it). Beat takes the
    # active imports whose tick is due, oldest first, and advances this column in the same
    # transaction that creates their runs (schedules.dispatch).
    next_run_at = models.DateTimeField(null=True, blank=True)
    # When the schedule or the status last changed: ticks before it belong to the old state,
    # so neither catch-up nor reconciliation counts them.
    schedule_changed_at = models.DateTimeField(db_default=Now(), default=now)
    # Ticks that passed without a run (beat down, a dispatch lost): counted, and the import is
    # late from the first one until it runs on time again.
    missed_ticks = models.PositiveIntegerField(db_default=0, default=0)
    # The ticks missed since it last turned late (its late e-mail and attention say them; the
    # lifetime count above said neither this streak's size nor when it began).
    missed_while_late = models.PositiveIntegerField(db_default=0, default=0)
    late_since = models.DateTimeField(null=True, blank=True)
    # Reconciliation compared this import's ticks with its runs up to here.
    reconciled_until = models.DateTimeField(null=True, blank=True)
    # The ticks beat last counted as missed (from, until), which left no run: reconciliation
    # finds them without a run too, and counted them a second time.
    missed_counted_from = models.DateTimeField(null=True, blank=True, editable=False)
    missed_counted_until = models.DateTimeField(null=True, blank=True, editable=False)

    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="scheduled_import",
        editable=False,
    )
    created_at = models.DateTimeField(db_default=Now(), default=now)
    updated_at = models.DateTimeField(db_default=Now(), auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # API and admin address an import by name within its owner's list.
            models.UniqueConstraint(fields=["owner", "name"], name="import_name_unique_per_owner"),
            # A row can never carry a schedule that beat could not run.
            models.CheckConstraint(
                condition=(Q(schedule_type="cron") & ~Q(cron_expression=""))
                | (Q(schedule_type="interval") & Q(interval_seconds__isnull=False)),
                name="import_schedule_is_complete",
            ),
        ]
        indexes = [
            # The staff dashboard's "failing now" list.
            models.Index(
                fields=["consecutive_failures"],
                name="import_failing_idx",
                condition=Q(consecutive_failures__gt=0),
            ),
            # Beat's loop: the active imports whose next tick is due, oldest first.
            models.Index(
                fields=["next_run_at"],
                name="import_due_idx",
                condition=Q(status="active"),
            ),
            # The imports needing attention (schedules.attention: a failed, timed-out or
            # partial last run; late) and the count of late ones, which the dashboard asks at
            # every view and poll: with import_due_idx for the overdue ones, a bitmap of the
            # few that match instead of reading every import (at 10,000 imports, 9.5 ms and
            # 6.6 ms a time against 2.5 and 0.1).
            models.Index(
                fields=["last_run_status"],
                name="import_last_run_bad_idx",
                condition=Q(last_run_status__in=["failed", "timed_out", "partial"]),
            ),
            models.Index(
                fields=["late_since"],
                name="import_late_idx",
                condition=Q(late_since__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    # --- schedule -------------------------------------------------------------------------

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def schedule(self) -> Schedule:
        """The import's ticks, as schedules.ticks evaluates them for every surface."""
        if self.schedule_type == self.ScheduleType.INTERVAL:
            return Schedule(interval_seconds=self.effective_interval)
        return Schedule(cron_expression=self.cron_expression, timezone=self.timezone)

    @property
    def effective_interval(self) -> int | None:
        """The interval the import fires at: its own, or MIN_INTERVAL_SECONDS when the operator
        raised it past an interval saved before (read at save only, such an import kept firing
        at its old pace, and nothing said so)."""
        if self.interval_seconds is None:
            return None
        return max(self.interval_seconds, settings.MIN_INTERVAL_SECONDS)

    def next_runs(self, count: int = 5, after: datetime | None = None) -> list[datetime]:
        """The next `count` ticks after `after`, in UTC: exactly what beat will fire.

        Without `after`, the list starts at the tick of the next run beat makes
        (`next_run_listed`): the tick it is due to dispatch next (`next_run_at`), even if that
        is a moment ago and beat has not got to it yet; during an outage, never a tick older
        than the grace period, which beat will not fire as itself.
        """
        first = self.next_run_listed() if after is None else None
        if first is not None:
            return self.ticks_from(first, count)
        ticks = self.schedule.ticks_after(after or database_clock.now())
        return [next(ticks) for _ in range(count)]

    def next_run_listed(self) -> datetime | None:
        """The tick of the next run beat makes, were it to dispatch now (the API's and the
        admin's `next_run_at`, the first of `next_runs`); None for an import beat does not fire.

        `next_run_at` keeps beat's place: the first tick not dispatched yet, however old, from
        which it counts the ticks missed (`missed_ticks`, `late`). What runs of them is decided
        as beat decides it (Schedule.first_to_run): a tick older than the grace period is
        listed only as `coalesce`'s one catch-up run, as the latest missed tick.
        """
        if self.next_run_at is None or self.status != self.Status.ACTIVE:
            return None
        return self.first_run_of(
            self.schedule, self.catchup, self.next_run_at, database_clock.now()
        )

    @classmethod
    def first_run_of(
        cls, schedule: Schedule, catchup: str, due: datetime, at: datetime
    ) -> datetime:
        """`next_run_listed` of an active import of `schedule` and `catchup` whose first tick
        not dispatched is `due`, at `at` (schedules.display keeps it per schedule for lists)."""
        return schedule.first_to_run(
            due,
            at,
            timedelta(seconds=settings.MISSED_TICK_GRACE_SECONDS),
            coalesce=catchup == cls.Catchup.COALESCE,
        )

    def ticks_from(self, first: datetime, count: int) -> list[datetime]:
        """`first` (a tick) and the ticks after it, `count` in all, in UTC."""
        return [first, *islice(self.schedule.ticks_after(first), max(count - 1, 0))][:count]

    def tick_for(self, moment: datetime) -> datetime:
        """The scheduled tick that a dispatch at `moment` stands for (the latest tick <= moment)."""
        return self.schedule.tick_at_or_before(moment)

    def is_late(self, at: datetime | None = None) -> bool:
        """A tick was missed, or the next one is overdue by more than the grace period."""
        return is_late(self.status, self.late_since, self.next_run_at, at)

    @property
    def schedule_description(self) -> str:
        if self.schedule_type == self.ScheduleType.INTERVAL:
            words = describe_interval(self.effective_interval)
            if self.effective_interval != self.interval_seconds:
                asked = describe_interval(self.interval_seconds).lower()
                words += f" (MIN_INTERVAL_SECONDS; the import asks for {asked})"
            return words
        return f"{self.schedule.describe()} ({self.timezone})"

    # --- source credential ------------------------------------------------------------------

    @property
    def credential(self) -> dict | None:
        """What is set ({"kind", "set", "origin"}), never the secret (schedules.credentials)."""
        return credentials.summary(self.credential_kind, self.credential_origin)

    @credential.setter
    def credential(self, value: dict | None) -> None:
        # Held in clear on this instance only until clean() validates and encrypts it; None
        # removes the credential.
        self._new_credential = value if value is not None else {}

    def seal_credential(self) -> None:
        """Encrypt a credential given since the last clean() (validated by then)."""
        new = getattr(self, "_new_credential", None)
        if new is None:
            return
        # The credential replaced or removed, as saved (not one given since and not saved yet):
        # save() keeps it for the texts of the runs saved under it to be hidden.
        if not getattr(self, "_replaced_secret", ""):
            self._replaced_secret = self.credential_secret
        if not new:
            self.credential_kind = self.credential_origin = self.credential_secret = ""
        else:
            cleaned = credentials.clean_credential(new, self.source_scheme)
            self.credential_secret = credentials.encrypt(cleaned)
            self.credential_kind = cleaned["kind"]
            self.credential_origin = credentials.origin(self.source_url)
        self._new_credential = None

    @property
    def source_scheme(self) -> str:
        try:
            return urlsplit(self.source_url or "").scheme.lower()
        except ValueError:
            return ""  # (no URL at all: the validation says so)

    @property
    def host_key_fingerprint(self) -> str:
        return host_key_fingerprint(self.sftp_host_key)

    @property
    def offered_host_key_fingerprint(self) -> str:
        return host_key_fingerprint(self.sftp_offered_host_key)

    def loaded(self) -> ScheduledImport:
        # The fields an edit is checked against, as saved; the source among them: a pinned host
        # key belongs to its host and port (clean()). A rule added later (a name's characters,
        # a description's length) applies to a field an edit sets, so that an import saved
        # before stays editable.
        self._saved_values = {
            name: self.__dict__.get(name)
            for name in (*POLICY_FIELDS, *KEY_FIELDS, "owner_id", "name", "description")
        }
        return self

    def unchanged_fields(self, names: tuple[str, ...]) -> set[str]:
        """Those of `names` an edit leaves as they were saved (none for a new import)."""
        saved = getattr(self, "_saved_values", None)
        if saved is None:
            return set()
        return {name for name in names if getattr(self, name) == saved[name]}

    def policy_fields_unchanged(self) -> set[str]:
        """The POLICY_FIELDS an edit leaves as they were saved (none for a new import)."""
        return self.unchanged_fields(POLICY_FIELDS)

    def key_fields_changed(self) -> bool:
        """A new import, or an edit that changes one of KEY_FIELDS."""
        return self.unchanged_fields(KEY_FIELDS) != set(KEY_FIELDS)

    def forget_host_key_of_another_server(self) -> None:
        """A source moved to another host or port: the key pinned for the old one says nothing
        about the new one, whose first check or run pins its own."""
        saved = getattr(self, "_saved_values", None)
        if saved is None:
            return
        if credentials.origin(saved["source_url"]) != credentials.origin(self.source_url):
            self.sftp_host_key = self.sftp_offered_host_key = ""

    def clean(self) -> None:
        from schedules.validation import validate_import_fields

        self.drop_other_schedule()
        validate_import_fields(self)
        self.seal_credential()
        self.forget_host_key_of_another_server()

    def drop_other_schedule(self) -> None:
        """Forget the fields of the schedule type not in use: an import switched from cron to
        interval would otherwise go on showing (and, switched back, silently reuse) the old
        cron expression. Every surface validates through clean(), so all of them do this."""
        if self.schedule_type == self.ScheduleType.INTERVAL:
            self.cron_expression = ""
        elif self.schedule_type == self.ScheduleType.CRON:
            self.interval_seconds = None

    # --- django-celery-beat ---------------------------------------------------------------

    def save(self, *args, **kwargs) -> None:
        """Save and keep the beat entry in step, whatever surface changed the import."""
        from django.db import transaction

        if not self.webhook_secret:
            # Per import, so that one receiver's leak cannot forge another import's webhooks.
            self.webhook_secret = secrets.token_hex(32)
        if not self._state.adding and kwargs.get("update_fields") is None and not args:
            # What its owner may change, and no more: the columns the workers and beat keep
            # (counters, streak, the next tick, lateness) were written back as the request
            # read them, so a run that ended meanwhile was lost from the counts and its
            # streak's alert went out twice; a tick beat had dispatched was put back.
            kwargs["update_fields"] = _owners_columns()
        with transaction.atomic():
            super().save(*args, **kwargs)
            self.sync_periodic_task()

    def take_replaced_credential(self) -> str:
        """The credential (encrypted) replaced or removed since the last save, once: the
        post_save signal hands it on to be hidden in the runs saved under it (schedules.signals)."""
        replaced, self._replaced_secret = getattr(self, "_replaced_secret", ""), ""
        return replaced if replaced != self.credential_secret else ""

    def sync_periodic_task(self, *, mend_only: bool = False) -> None:
        """Create or update this import's `PeriodicTask` and its schedule row.

        The one place that talks to django-celery-beat. Its tables stay the schedule's home in
        the admin, but beat fires from `next_run_at` (project.beat): a changed schedule or
        status starts the import's ticks afresh from now, an unchanged one keeps the tick beat
        is due to dispatch next. A changed schedule of an active import keeps a tick already
        due that beat has yet to dispatch, within the grace period (tick_kept_at_change).
        `mend_only`: the import did not change, only its entry is put in step (deleted or
        disabled in the beat admin): its ticks and lateness stay as they are, where starting
        afresh dropped the ticks beat had yet to count missed.
        """
        from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

        task = self.periodic_task or PeriodicTask()
        before = (task.pk, task.enabled, task.crontab_id, task.interval_id)
        task.name = self.periodic_task_name()
        task.task = "importbeat.dispatch_scheduled_import"
        task.args = f"[{self.pk}]"
        task.enabled = self.status == self.Status.ACTIVE
        task.description = f"{self.owner} / {self.name}"
        # No bump of django-celery-beat's one "something changed" row (PeriodicTasks): beat
        # does not read imports' entries (project.beat), and that single row, updated by every
        # save, made creating imports in one transaction slow down quadratically.
        task.no_changes = True
        if self.schedule_type == self.ScheduleType.CRON:
            minute, hour, day_of_month, month_of_year, day_of_week = self.schedule.fields.split()
            task.crontab = _schedule_row(
                CrontabSchedule,
                minute=minute,
                hour=hour,
                day_of_month=day_of_month,
                month_of_year=month_of_year,
                day_of_week=day_of_week,
                timezone=self.timezone,
            )
            task.interval = None
        else:
            # The interval it fires at (the minimum raised since it was set, if so): the entry
            # said "every 10 seconds" of an import firing hourly.
            task.interval = _schedule_row(
                IntervalSchedule, every=self.effective_interval, period=IntervalSchedule.SECONDS
            )
            task.crontab = None
        task.save()
        # (An entry that said another interval, MIN_INTERVAL_SECONDS changed since, is a
        # schedule change, mended or not: put_intervals_in_step.)
        moved = before[0] is not None and before[2:] != (task.crontab_id, task.interval_id)
        if mend_only and not moved and (self.next_run_at is not None or not task.enabled):
            if self.periodic_task_id != task.pk:
                self.periodic_task = task
                type(self).objects.filter(pk=self.pk).update(periodic_task=task)
            return
        changed = before != (task.pk, task.enabled, task.crontab_id, task.interval_id)
        if not changed and (self.next_run_at is not None or not task.enabled):
            return
        # Beat judges the next tick by the database's clock: by a web host's clock two minutes
        # slow, a new import's first tick was already past, counted missed, the import late.
        moment = database_clock.now()
        # The ticks the import missed while active (beat down or stalled) up to the change:
        # counted, as beat counts them, before its ticks start afresh. Dropped, a pause and
        # resume made during an outage left no trace of the ticks it missed.
        mine = type(self).objects.filter(pk=self.pk)
        was_due = mine.values_list("next_run_at", flat=True).first()
        missed, kept = 0, None
        if was_due is not None and was_due <= moment:
            planned = planned_schedules({self.pk: before[2:]}, {self.pk: self.schedule})[self.pk]
            missed = ticks_missed_before(planned, was_due, moment)
            if task.enabled:
                # A tick due at the change that beat has yet to get to (its loop, a lock, a
                # restart) is beat's to run: started afresh from now, it was neither run nor
                # counted missed. (A pause drops it on purpose.)
                kept = tick_kept_at_change(planned, self.schedule, was_due, moment)
        if moved:
            # The row it left goes if no entry uses it any more (read above first: it is the
            # schedule the missed ticks were planned with). Kept, every reschedule left one
            # behind, listed in the beat admin's forms for good (growth hunt).
            delete_unused_schedule_rows(CrontabSchedule, [before[2]], keep=task.crontab_id)
            delete_unused_schedule_rows(IntervalSchedule, [before[3]], keep=task.interval_id)
        self.periodic_task = task
        if task.enabled:
            self.next_run_at = kept or self.next_runs(1, after=moment)[0]
        else:
            self.next_run_at = None
        self.schedule_changed_at = moment
        # A late streak goes on (it ends when a tick is dispatched on time again, and the
        # changed schedule has not had one yet); the ticks missed at the change begin one. A
        # paused or cancelled import is late no more: its ticks missed are counted, and no
        # owner is told of a streak it ended itself.
        streak: dict[str, Any] = {"missed_ticks": F("missed_ticks") + missed} if missed else {}
        if not task.enabled:
            streak.update(late_since=None, missed_while_late=0)
        elif missed:
            streak.update(
                missed_while_late=Case(
                    When(late_since__isnull=True, then=Value(missed)),
                    default=F("missed_while_late") + missed,
                ),
                late_since=Coalesce(F("late_since"), Value(moment)),
            )
        mine.update(
            periodic_task=task, next_run_at=self.next_run_at, schedule_changed_at=moment, **streak
        )
        if streak:
            self.missed_ticks, self.missed_while_late, self.late_since = mine.values_list(
                "missed_ticks", "missed_while_late", "late_since"
            ).get()
        if missed:
            tell_of_ticks_missed_at_change({self.pk: (missed, was_due)}, told=task.enabled)

    def periodic_task_name(self) -> str:
        """The beat entry's name in the Periodic tasks admin: the import's, then its owner and
        id (names are unique there, and the id keeps them so when two owners share a name)."""
        suffix = f" ({self.owner}) · import #{self.pk}"
        return self.name[: PERIODIC_TASK_NAME_LENGTH - len(suffix)] + suffix

    @property
    def success_rate(self) -> float | None:
        """Share of finished runs that `succeeded`; a partial run is not a success."""
        finished = self.successful_runs + self.partial_runs + self.failed_runs
        return round(self.successful_runs / finished, 4) if finished else None


# Written by the workers, beat and reconciliation alone, each by its own UPDATE of them (services
# apply_outcome, dispatch, reconcile, sync_periodic_task): never by a save of the whole import.
KEPT_BY_THE_SCHEDULER = frozenset({
    "total_runs", "successful_runs", "partial_runs", "failed_runs", "consecutive_failures",
    "last_run_at", "last_run_status", "last_success_at", "next_run_at", "missed_ticks",
    "late_since", "reconciled_until", "schedule_changed_at", "periodic_task", "missed_while_late",
    "missed_counted_from", "missed_counted_until",
})  # fmt: skip


@cache
def _owners_columns() -> list[str]:
    """The columns a save of an import writes: all but KEPT_BY_THE_SCHEDULER."""
    return [
        field.name
        for field in ScheduledImport._meta.concrete_fields
        if not field.primary_key and field.name not in KEPT_BY_THE_SCHEDULER
    ]


def is_overdue(due: datetime | None, moment: datetime) -> bool:
    """A next tick `due` older than the grace period at `moment`: missed, as beat counts it."""
    grace = timedelta(seconds=settings.MISSED_TICK_GRACE_SECONDS)
    return due is not None and due <= moment - grace


def planned_schedules(
    entries: dict[int, tuple[int | None, int | None]], fallback: dict[int, Schedule]
) -> dict[int, Schedule]:
    """The schedule each import's `next_run_at` was planned with, by import id: the one its
    beat entry records ((crontab id, interval id) of the entry), which is the interval at the
    MIN_INTERVAL_SECONDS of the time; `fallback` (the import's own) for an import without one.
    Two statements at most, however many imports."""
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule

    crontabs = CrontabSchedule.objects.in_bulk([c for c, _i in entries.values() if c])
    intervals = IntervalSchedule.objects.in_bulk([i for _c, i in entries.values() if i])
    planned = {}
    for pk, (crontab_id, interval_id) in entries.items():
        every = _interval_of(intervals.get(interval_id))
        if every:
            planned[pk] = Schedule(interval_seconds=every)
        elif crontab_id in crontabs:
            row = crontabs[crontab_id]
            fields = (row.minute, row.hour, row.day_of_month, row.month_of_year, row.day_of_week)
            planned[pk] = Schedule(cron_expression=" ".join(fields), timezone=str(row.timezone))
        else:
            planned[pk] = fallback[pk]
    return planned


def _interval_of(row: Any) -> int | None:
    """Whole seconds of a beat entry's interval row; None for no row, or one below a second
    (an operator may set `microseconds` in the Periodic tasks admin: a 0 s schedule stopped
    beat and reconciliation for every import; review), which the import's own stands in for."""
    if row is None:
        return None
    try:
        seconds = int(timedelta(**{row.period: row.every}).total_seconds())
    except (TypeError, ValueError, OverflowError):
        return None
    return seconds if seconds >= 1 else None


def ticks_missed_before(schedule: Schedule, due: datetime | None, moment: datetime) -> int:
    """How many ticks of `schedule` from `due` (the next tick beat had not dispatched) were
    missed at `moment`, when a change starts the import's ticks afresh: each one older than the
    grace period, as beat would have counted them (Schedule.missed_from). No catch-up: the
    changed schedule decides what runs next."""
    if due is None or not is_overdue(due, moment):
        return 0
    return schedule.missed_from(due, moment - timedelta(seconds=settings.MISSED_TICK_GRACE_SECONDS))


def tick_kept_at_change(
    planned: Schedule, changed: Schedule, due: datetime, moment: datetime
) -> datetime | None:
    """The tick that an active import's change at `moment` keeps for beat to run on time, if
    any (the ticks older than the grace period are ticks_missed_before's to count). `planned`:
    the schedule before the change; `due`: the first tick beat had not dispatched, at or
    before `moment`.

    A tick of `planned` due and younger than the grace period is beat's to run: had beat got to
    it before the change, it would have run on time. The tick kept is the newest one due at the
    change, of `planned` or of `changed`: its run takes the file after every tick due then, as
    beat's one run for ticks that come due together (schedules.dispatch), and beat runs it from
    `next_run_at`, then the ticks of `changed` after it, all after the change, as next_runs
    lists them. A tick of either schedule between the first due and the change had them all
    counted missed before: an every-minute import under a grace period of five minutes, or
    one whose changed schedule ticked since, turned late and its owner was told of ticks
    missed where the user had only edited it.
    """
    cutoff = moment - timedelta(seconds=settings.MISSED_TICK_GRACE_SECONDS)
    first = due if due > cutoff else planned.next_after(cutoff)
    if first > moment:
        return None
    kept = first
    for schedule in (planned, changed):
        # (The walk back only when a later tick is there to find.)
        if schedule.next_after(first) <= moment:
            kept = max(kept, schedule.tick_at_or_before(moment))
    return kept


# Sent with {import id: (ticks counted, the first)} once a change counted ticks missed before
# it (tell_of_ticks_missed_at_change); schedules.signals has the owners told, as beat has them.
ticks_missed_at_change = Signal()


def tell_of_ticks_missed_at_change(
    missed: dict[int, tuple[int, datetime]], told: bool = True
) -> None:
    """Say the ticks counted at a change ({import id: (count, first tick)}) in beat's log line,
    and have each owner told of the late streak as beat has them told, once the change commits:
    in one message to a worker (made here if the broker refuses it), once a streak
    (notifications.on_imports_late), so not again of a streak already told."""
    examples = " ".join(
        f"import={pk}:count={count}:since={since.isoformat()}"
        for pk, (count, since) in list(missed.items())[:10]
    )
    more = f" and {len(missed) - 10} more imports" if len(missed) > 10 else ""
    beat_logger.warning(
        "missed ticks count=%s imports=%s %s%s (counted at a pause, resume or schedule change)",
        sum(count for count, _since in missed.values()), len(missed), examples, more,
    )  # fmt: skip
    if told:
        transaction.on_commit(lambda: ticks_missed_at_change.send(ScheduledImport, missed=missed))


def intervals_out_of_step() -> models.QuerySet:
    """The active interval imports whose beat entry records another interval than the one they
    fire at: MIN_INTERVAL_SECONDS changed since their ticks were planned. One statement."""
    from django_celery_beat.models import IntervalSchedule

    fires_at = Greatest(F("interval_seconds"), Value(settings.MIN_INTERVAL_SECONDS))
    # An import whose next tick is overdue is beat's first (dispatch_due): it makes the
    # catch-up run `coalesce` promises, from the plan the ticks were listed by; re-planned
    # here first, the import lost it (review).
    overdue = database_clock.now() - timedelta(seconds=settings.MISSED_TICK_GRACE_SECONDS)
    return ScheduledImport.objects.filter(
        status=ScheduledImport.Status.ACTIVE,
        schedule_type=ScheduledImport.ScheduleType.INTERVAL,
        periodic_task__interval__isnull=False,
        next_run_at__gt=overdue,
    ).filter(
        ~Q(periodic_task__interval__every=fires_at)
        | ~Q(periodic_task__interval__period=IntervalSchedule.SECONDS)
    )


def put_intervals_in_step(
    batch: int = 200, limit: int | None = None, skip_locked: bool = False
) -> int:
    """Start afresh the ticks of the imports planned at another MIN_INTERVAL_SECONDS
    (_put_intervals_in_step); how many were put in step.

    Never in the way of its caller (beat's dispatch, reconciliation's pass): a fault of one
    entry's row (an operator's entry in `microseconds`) stopped beat's dispatch for every
    import and failed every pass. It is logged; the database's own faults go up, to be said
    in the caller's words (the database is away, a lock waited too long).
    """
    try:
        return _put_intervals_in_step(batch, limit, skip_locked)
    except DatabaseError:
        raise
    except Exception:
        beat_logger.exception("interval imports not put in step with MIN_INTERVAL_SECONDS")
        return 0


def _put_intervals_in_step(batch: int, limit: int | None, skip_locked: bool) -> int:
    """Start afresh the ticks of the imports of intervals_out_of_step (sync_periodic_task, a
    batch a transaction), so that a changed MIN_INTERVAL_SECONDS is a schedule change: their
    next tick planned again from now, the ticks they missed before it counted. Kept on the
    interval planned before, an import lowered back to every minute listed and fired its
    hourly tick first, while reconciliation, reading the ticks of now, counted the minutes
    before it missed and ran catch-ups nobody listed. Reconciliation at each pass, before it
    counts ticks (all of them); beat from its start (`limit` a loop, those locked by another
    left to it). How many were put in step."""
    if not intervals_out_of_step().exists():  # (the look of every pass: one statement)
        return 0
    done = last_id = 0
    while limit is None or done < limit:
        size = batch if limit is None else min(batch, limit - done)
        with transaction.atomic():
            imports = list(
                intervals_out_of_step()
                .filter(pk__gt=last_id)
                .select_for_update(of=("self",), skip_locked=skip_locked)
                .select_related("owner", "periodic_task")
                .order_by("pk")[:size]
            )
            for imp in imports:
                imp.sync_periodic_task()
        if not imports:
            break
        done += len(imports)
        last_id = imports[-1].pk
    if done:
        beat_logger.warning(
            "interval imports rescheduled count=%s: MIN_INTERVAL_SECONDS is %s, their beat entries"
            " said otherwise (it changed since their ticks were planned)",
            done, settings.MIN_INTERVAL_SECONDS,
        )  # fmt: skip
    return done


def _schedule_row(model: type[models.Model], **fields: Any) -> models.Model:
    """django-celery-beat's schedule row with these fields: the first there, or a new one.

    Not `get_or_create`: nothing keeps the rows unique (two imports saved at once with a new
    rule both insert one; so does an operator adding the same interval in the admin), and
    `get` then raised on two rows, which made every later save of every import on that
    schedule a 500. django-celery-beat's own `from_schedule` takes the first likewise.

    The row is locked (FOR KEY SHARE) until the save commits: a save moving another entry off
    it passes it over instead of deleting it (delete_unused_schedule_rows), whose deletion made
    this save's commit fail (the entry's foreign key is checked then: a 500). A row such a save
    is deleting (locked FOR UPDATE) is passed over here in turn, without a wait: the next one
    alike, or a new one. Made without django-celery-beat's save signal, which bumps its one
    "something changed" row (PeriodicTasks) and holds it locked until the commit: every other
    save making a row waited for this one's transaction, however long. Beat does not read the
    imports' entries (project.beat), nor a row no entry of its own uses.
    """
    from django.db import connection

    sql, params = model.objects.filter(**fields).order_by("pk")[:1].query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} FOR KEY SHARE SKIP LOCKED", params)
        found = cursor.fetchone()
    if found is None:
        return model.objects.bulk_create([model(**fields)])[0]
    return model.objects.get(pk=found[0])


def delete_unused_schedule_rows(
    model: type[models.Model], ids: list[int | None] | None = None, *, keep: int | None = None
) -> int:
    """Delete django-celery-beat's schedule rows (crontab or interval) that no beat entry uses:
    those of `ids` (but `keep`), or all of them DELETE_BATCH at a time (the hourly retention's
    sweep of what was left). Whoever's entries: an import's, a maintenance job's, an
    operator's; how many went.

    A row a save is picking (locked by _schedule_row) is passed over, not waited for, and left
    for the retention: its save's entry would use a row deleted under it. Locked first, then
    found unused by a statement that starts after the lock (so after the commit of any save
    that held it), in the same transaction: checked in the one DELETE, a save that committed
    between its start and its lock was not seen, and this transaction's commit failed.
    """
    from django.db import connection
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    table = model._meta.db_table
    column = "crontab_id" if model is CrontabSchedule else "interval_id"
    unused = (
        f"NOT EXISTS (SELECT 1 FROM {PeriodicTask._meta.db_table} e WHERE e.{column} = {table}.id)"
    )
    if ids is not None:
        ids = [pk for pk in ids if pk is not None and pk != keep]
        if not ids:
            return 0
        pick, params = "id = ANY(%s)", [ids]
    else:
        pick, params = "id > %s", [0]
    deleted = 0
    while True:
        # (In the caller's transaction if any: the rows stay locked until its entries commit.)
        with transaction.atomic(savepoint=False), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {table} WHERE {pick} AND {unused}"
                " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                [*params, DELETE_SCHEDULE_ROWS_BATCH],
            )
            locked = [pk for (pk,) in cursor.fetchall()]
            if locked:
                cursor.execute(f"DELETE FROM {table} WHERE id = ANY(%s) AND {unused}", [locked])
                deleted += cursor.rowcount
        if ids is not None or len(locked) < DELETE_SCHEDULE_ROWS_BATCH:
            return deleted
        params = [locked[-1]]


# Schedule rows deleted a statement (delete_unused_schedule_rows), as the retention's batches.
DELETE_SCHEDULE_ROWS_BATCH = 5_000


def is_late(
    status: str,
    late_since: datetime | None,
    next_run_at: datetime | None,
    at: datetime | None = None,
) -> bool:
    """ScheduledImport.is_late() of an import with these fields (what lists read of it)."""
    if status != ScheduledImport.Status.ACTIVE:
        return False
    if late_since is not None:
        return True
    grace = timedelta(seconds=settings.MISSED_TICK_GRACE_SECONDS)
    return next_run_at is not None and next_run_at < (at or database_clock.now()) - grace


def describe_interval(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"Every {unit}" if count == 1 else f"Every {count} {unit}s"
    return f"Every {seconds} seconds"


class ImportRun(models.Model):
    """One occurrence of an import: a scheduled tick or a manual trigger. Retries are attempts."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        MANUAL = "manual"
        API = "api"
        CATCHUP = "catchup"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        RETRYING = "retrying"
        SUCCEEDED = "succeeded"
        PARTIAL = "partial"
        FAILED = "failed"
        TIMED_OUT = "timed_out"
        SKIPPED = "skipped"
        CANCELLED = "cancelled"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING, Status.RETRYING)
    # A run that landed its rows (a partial one too: it ends a failure streak), and one that
    # failed (extends it).
    GOOD_STATUSES = (Status.SUCCEEDED, Status.PARTIAL)
    FAILED_STATUSES = (Status.FAILED, Status.TIMED_OUT)
    FINAL_STATUSES = (
        Status.SUCCEEDED,
        Status.PARTIAL,
        Status.FAILED,
        Status.TIMED_OUT,
        Status.SKIPPED,
        Status.CANCELLED,
    )

    scheduled_import = models.ForeignKey(
        ScheduledImport, on_delete=models.CASCADE, related_name="runs"
    )
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    scheduled_for = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        db_default=Status.QUEUED, max_length=10, choices=Status.choices, default=Status.QUEUED
    )
    # The database's time, as its start and end (common.database_clock), whoever queues it.
    queued_at = models.DateTimeField(db_default=Now(), default=database_clock.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveBigIntegerField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(db_default=0, default=0)
    rows_read = models.PositiveBigIntegerField(db_default=0, default=0)
    rows_inserted = models.PositiveBigIntegerField(db_default=0, default=0)
    rows_updated = models.PositiveBigIntegerField(db_default=0, default=0)
    rows_unchanged = models.PositiveBigIntegerField(db_default=0, default=0)
    rows_deleted = models.PositiveBigIntegerField(db_default=0, default=0)
    rows_failed = models.PositiveBigIntegerField(db_default=0, default=0)
    bytes_read = models.PositiveBigIntegerField(db_default=0, default=0)
    bytes_total = models.PositiveBigIntegerField(null=True, blank=True)
    # The importer's step while it runs (download, staging, checks, merge), so that a bar
    # at 100 % during a long merge says what is going on (the dashboard).
    phase = models.CharField(db_default="", max_length=10, blank=True, default="")
    error_message = models.TextField(default="", db_default="", blank=True)
    error_details = models.JSONField(db_default={}, default=dict, blank=True)
    worker = models.CharField(default="", db_default="", max_length=255, blank=True)
    celery_task_id = models.CharField(default="", db_default="", max_length=255, blank=True)
    # SHA-256 of the fetched file's bytes (what `sha256sum` prints for it), and the server's
    # ETag and Last-Modified for it: the next run asks for the file only if it changed.
    file_digest = models.CharField(default="", db_default="", max_length=64, blank=True)
    source_etag = models.CharField(default="", db_default="", max_length=255, blank=True)
    source_last_modified = models.CharField(default="", db_default="", max_length=255, blank=True)
    # Which file the run took, when the source names more than one (a glob's match on an SFTP
    # server or in a drop folder: tasks.drop_folder, tasks.sftp); blank for HTTP.
    source_file = models.CharField(db_default="", max_length=1024, blank=True, default="")
    # Written when an attempt starts and then every third of RUN_LEASE_SECONDS while it lives;
    # a `running` run whose heartbeat stopped belongs to a dead worker (tasks.maintenance).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When the current attempt started: a run whose worker died after running for its whole
    # timeout was killed by the hard time limit, and ends `timed_out` rather than retrying.
    attempt_started_at = models.DateTimeField(null=True, blank=True)
    # Set in the very transaction that commits an attempt's rows, with the counts written to
    # this row: from then on the run is finished from these counts, whatever happens to the
    # attempt afterwards (a database blip while finishing, a lost worker), never failed and
    # never imported again (which would count every row it wrote as unchanged).
    rows_committed_at = models.DateTimeField(null=True, blank=True)
    # A cancel asked of a running attempt (`POST /runs/{id}/cancel`, the admin): the worker
    # reads it at its next safe point (a progress report, the start of the merge) and ends
    # the run `cancelled`; a merge already committed is not undone.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    # The failed or timed-out run this one retries (`POST /runs/{id}/retry`, the admin).
    retry_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="retries"
    )

    class Meta:
        ordering = ["-queued_at", "-id"]
        constraints = [
            # Exactly once per tick: a second dispatch of the same tick cannot insert a run.
            models.UniqueConstraint(
                fields=["scheduled_import", "scheduled_for"],
                name="run_unique_per_tick",
                condition=Q(scheduled_for__isnull=False),
            ),
            # Single instance, as an invariant of the database: the Redis lease decides who
            # runs, and this index makes a second running (or backing-off) run of the same
            # import impossible even if Redis forgot the lease (a restart without persistence).
            models.UniqueConstraint(
                fields=["scheduled_import"],
                name="run_one_in_progress_per_import",
                condition=Q(status__in=["running", "retrying"]),
            ),
        ]
        indexes = [
            # Run history of one import, newest first (`GET /imports/{id}/runs/`: a page's ids
            # and places from the index alone, id last as the list's order has it), and the
            # import's stats (schedules.stats.import_stats: their series and totals read the
            # columns it carries, not a year of runs' rows: 1.1-2.3 s at 500,000 runs).
            models.Index(
                fields=["scheduled_import", "-queued_at", "-id"],
                include=[
                    "status",
                    "duration_ms",
                    "rows_read",
                    "rows_inserted",
                    "rows_updated",
                    "rows_unchanged",
                    "rows_deleted",
                    "rows_failed",
                ],
                name="run_history_idx",
            ),
            # "Is a run of this import active?" (manual trigger 409, overlap policy).
            models.Index(
                fields=["scheduled_import"],
                name="run_active_idx",
                condition=Q(status__in=["queued", "running", "retrying"]),
            ),
            # Retention deletes by age; the dashboard's chart counts the last days' runs by
            # status from this index alone (the status is in it: no visit to a million rows);
            # the admin's run list and a staff's `GET /runs/` take a page's ids from it alone
            # (the id in it, as their order ends: a deep admin page read every run above it).
            models.Index(fields=["queued_at", "id"], include=["status"], name="run_queued_at_idx"),
            # `GET /runs/?status=...` and `?trigger=...`, newest first: the runs of that status
            # (or trigger) alone, the import in the index to check the owner. A filter that
            # matched none of a user's runs walked every run of the year (0.2-1 s).
            models.Index(
                fields=["status", "-queued_at", "-id"],
                include=["scheduled_import"],
                name="run_status_list_idx",
            ),
            models.Index(
                fields=["trigger", "-queued_at", "-id"],
                include=["scheduled_import"],
                name="run_trigger_list_idx",
            ),
            # An import's p95 duration (schedules.stats._p95): its runs that did work, slowest
            # first, read from the top down to the 95 % place, not every run sorted.
            models.Index(
                fields=["scheduled_import", "-duration_ms"],
                include=["queued_at"],
                condition=Q(
                    status__in=["succeeded", "partial", "failed", "timed_out"],
                    duration_ms__isnull=False,
                ),
                name="run_duration_rank_idx",
            ),
            # The runs in progress, oldest first (the dashboard, `live.json`): without it the
            # query walked the queued_at index past a year of finished runs.
            models.Index(
                fields=["queued_at"],
                name="run_in_progress_idx",
                condition=Q(status__in=["queued", "running", "retrying"]),
            ),
            # The maintenance sweep looks for running runs whose heartbeat stopped.
            models.Index(
                fields=["heartbeat_at"],
                name="run_running_heartbeat_idx",
                condition=Q(status="running"),
            ),
            # The sweep's scan of lost attempts whose end Flower and the result backend were
            # not told (tasks.lost_tasks.tell_untold_ends): only those runs, a handful, whenever
            # they were queued. Bounded to runs queued in the last 6 h, it walked the queued_at
            # index (41-79 ms at 20,800 runs an hour) and never told a run queued before that.
            models.Index(
                fields=["finished_at"],
                name="run_lost_end_untold_idx",
                condition=Q(error_details__contains={"lost_task_end": {"told": False}}),
            ),
            # The sweep's scan of lost attempts' ends told to Flower and not stored in the
            # result backend (tasks.lost_tasks.store_unstored_ends): those runs alone, a handful.
            models.Index(
                fields=["finished_at"],
                name="run_lost_end_unstored_idx",
                condition=Q(error_details__contains={"lost_task_end": {"stored": False}}),
            ),
        ]

    def __str__(self) -> str:
        # The admin's titles and links ("run 11 of 8" read like a fraction).
        return f"Run #{self.pk} ({self.status.replace('_', ' ')})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES


def active_run_order() -> tuple:
    """The order an import's active runs are named in: the one that holds the import first
    (running, then retrying, then queued), then the newest. The newest alone named a tick
    queued behind the run in progress (`overlap: queue`), and the API said of an import 52 %
    through its run that it was not running. ACTIVE_RUN_ORDER_SQL says the same in SQL."""
    holding = Case(
        When(status=ImportRun.Status.RUNNING, then=0),
        When(status=ImportRun.Status.RETRYING, then=1),
        default=2,
    )
    return holding, "-pk"


ACTIVE_RUN_ORDER_SQL = (
    f"CASE {{alias}}.status WHEN '{ImportRun.Status.RUNNING.value}' THEN 0"
    f" WHEN '{ImportRun.Status.RETRYING.value}' THEN 1 ELSE 2 END, {{alias}}.id DESC"
)


class Record(models.Model):
    """One row of a dataset, addressed by its key; `content_hash` makes unchanged rows free."""

    # Write cost matters here: an import writes up to millions of records in one statement.
    # No index of its own (the unique (dataset, key) index serves every lookup by dataset) and
    # no database foreign key: its deferred check ran once per inserted row at commit (5.5 s
    # for a million rows); the importer locks the dataset row once instead (FOR KEY SHARE),
    # and deleting a dataset still deletes its records (Django's CASCADE).
    dataset = models.ForeignKey(
        Dataset,
        on_delete=models.CASCADE,
        related_name="records",
        db_index=False,
        db_constraint=False,
    )
    key = models.TextField()
    # Read exactly: a decimal's digits as stored, not a float's (schedules.exact_json).
    data = models.JSONField(decoder=ExactDecoder)
    # 64 bits of PostgreSQL's hashtextextended over the row's fields, computed while COPY
    # stages the file: md5 there cost 1.5 s a million rows, this 0.3 s. A collision would
    # only hide one change of one row, with odds of 2**-64 per change.
    content_hash = models.BigIntegerField()
    # The run that first inserted the row and the last one that changed it (an unchanged row is
    # never rewritten). Retention deletes old runs; records keep their ids rather than
    # making every retention sweep rewrite millions of records. Nothing looks records up by
    # run, so no index (each one cost a write per inserted record).
    first_seen_run = models.ForeignKey(
        ImportRun,
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    last_changed_run = models.ForeignKey(
        ImportRun,
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    created_at = models.DateTimeField(db_default=Now(), default=now)
    updated_at = models.DateTimeField(db_default=Now(), default=now)

    class Meta:
        constraints = [
            # Upserts land on (dataset, key): ON CONFLICT needs this unique index.
            models.UniqueConstraint(
                fields=["dataset", "key"], name="record_key_unique_per_dataset"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dataset_id}:{self.key}"


class RunTally(models.Model):
    """Monotonic counters of finished runs per import and final status, for `/metrics`.

    Written by a PostgreSQL trigger on `schedules_importrun` (migration 0008), not by Python:
    every path that ends a run (the runner's finish, a skip, a cancel, the sweep) is counted
    exactly once, in the run's own transaction, and retention deleting old runs never makes a
    counter go down, which Prometheus would read as a reset. Read-only for the application.
    """

    # Upper bounds (ms) of the run duration histogram's buckets; +Inf follows. The trigger has
    # the same list (migration 0008): change both together, with a new migration.
    DURATION_BOUNDS_MS = (100, 500, 1000, 5000, 15000, 60000, 300000, 900000, 3600000, 10800000)

    scheduled_import = models.ForeignKey(
        ScheduledImport, on_delete=models.CASCADE, related_name="tallies"
    )
    status = models.CharField(max_length=10)
    runs = models.PositiveBigIntegerField(default=0)
    rows_read = models.PositiveBigIntegerField(default=0)
    rows_inserted = models.PositiveBigIntegerField(default=0)
    rows_updated = models.PositiveBigIntegerField(default=0)
    rows_unchanged = models.PositiveBigIntegerField(default=0)
    rows_deleted = models.PositiveBigIntegerField(default=0)
    rows_failed = models.PositiveBigIntegerField(default=0)
    # Runs with a duration, their total, and how many fell in each bucket (not cumulative).
    duration_count = models.PositiveBigIntegerField(default=0)
    duration_ms_sum = models.PositiveBigIntegerField(default=0)
    duration_buckets = ArrayField(models.BigIntegerField(), default=list)

    class Meta:
        verbose_name_plural = "run tallies"
        constraints = [
            # The trigger's upsert lands on (import, status).
            models.UniqueConstraint(
                fields=["scheduled_import", "status"], name="run_tally_per_import_status"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scheduled_import_id}:{self.status} {self.runs}"


class NotificationDelivery(models.Model):
    """One notification of one event on one channel, and how its delivery went: the log a
    user reads at `GET /imports/{id}/deliveries/` (schedules.notifications)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        # An e-mail waiting for the owner's next one, which lists it (schedules.email_digest).
        HELD = "held"
        RETRYING = "retrying"
        DELIVERED = "delivered"
        FAILED = "failed"
        SKIPPED = "skipped"

    scheduled_import = models.ForeignKey(
        ScheduledImport, on_delete=models.CASCADE, related_name="deliveries"
    )
    run = models.ForeignKey(
        ImportRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    event = models.CharField(max_length=20)
    channel = models.CharField(max_length=10)
    target = models.CharField(default="", db_default="", max_length=2000, blank=True)
    status = models.CharField(
        db_default=Status.PENDING, max_length=10, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveSmallIntegerField(db_default=0, default=0)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(default="", db_default="", blank=True)
    # The sweep (notifications.resend_lost) and health age it: the database's clock, whichever
    # host wrote it.
    created_at = models.DateTimeField(db_default=Now(), default=database_clock.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When a `retrying` notification's next attempt is due: the sweep sends it again once that
    # is long past, its message lost (notifications.resend_lost).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # When an attempt took it (the database's clock), until that attempt logs how it went: a
    # second copy of its message (Redis reloaded from an older snapshot) posted it again
    # meanwhile (notifications.start).
    sending_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "notification deliveries"
        indexes = [
            # The delivery log of one import, newest first.
            models.Index(fields=["scheduled_import", "-created_at"], name="delivery_log_idx"),
            # The notifications still to send: the sweep's (notifications.resend_lost) and
            # an owner's e-mails waiting for one message (email_digest), a few among millions.
            models.Index(
                fields=["created_at"],
                name="delivery_waiting_idx",
                condition=models.Q(status__in=["pending", "held", "retrying"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} by {self.channel} ({self.status})"


class OwnerMailbox(models.Model):
    """When an owner was last e-mailed, and when their held e-mails go out: one e-mail per
    owner per EMAIL_DIGEST_SECONDS (schedules.email_digest). Its row is the lock the workers
    delivering that owner's e-mails meet on."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    last_sent_at = models.DateTimeField(null=True, blank=True)
    # When the message that sends the held e-mails is due; None while none is on its way.
    digest_due_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"e-mails of {self.user}"


class NotificationDefaults(models.Model):
    """A user's notification settings for the imports they create from now on (`PATCH /me`);
    each import keeps its own copy, changed with the import."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_defaults"
    )
    notify_on = models.JSONField(db_default=[], default=list, blank=True)
    notify_channels = models.JSONField(
        db_default=["email", "webhook"], default=default_channels, blank=True
    )

    def __str__(self) -> str:
        return f"notification defaults of {self.user}"


class ReplacedCredential(models.Model):
    """A credential an import no longer has, kept as it was saved (encrypted) until a worker has
    hidden it in the texts of the import's runs and their kept task results; then deleted
    (schedules.replaced_credentials)."""

    scheduled_import = models.ForeignKey(
        ScheduledImport, on_delete=models.CASCADE, related_name="+"
    )
    # The credential_secret it had: Fernet ciphertext, never the secret in clear.
    secret = models.TextField()
    # The runs up to this id are hidden: a job cut short (a time limit, a worker lost) resumes
    # after it.
    done_until = models.BigIntegerField(db_default=0, default=0)
    created_at = models.DateTimeField(db_default=Now(), default=now)
    # Moved at every batch: a row not touched for STALE_QUEUED_SECONDS has lost its job.
    touched_at = models.DateTimeField(db_default=Now(), default=database_clock.now)

    def __str__(self) -> str:
        return f"a credential import {self.scheduled_import_id} had"  # never the secret


class ProcessedFolder(models.Model):
    """A `processed/` folder a run filed a drop-folder file into (schedules.processed_files).

    Retention (tasks.processed_retention) deletes the old files of every folder listed here,
    whether or not an import files into it now: an import deleted, its `move_processed` turned
    off or its source moved would otherwise leave what it filed away there for ever. A folder is
    listed only once importbeat has made or used it, so a `processed/` folder of someone else's
    is never cleaned; it is forgotten once it is gone.
    """

    # As the run wrote it: the drop folder with its links resolved, then `processed` unresolved
    # (retention refuses a `processed` that is a link).
    path = models.TextField(unique=True)
    # When a run last filed a file here (or retention first walked it): a folder found gone is
    # forgotten only when nothing was filed there since that retention job began.
    seen_at = models.DateTimeField(db_default=Now(), default=now)

    def __str__(self) -> str:
        return self.path
