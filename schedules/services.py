"""The business rules of importbeat, used by the API, the admin, the commands and the tasks alike.

Surfaces call these functions instead of touching models directly, so that a rule (an import's
beat entry follows its status, a tick runs once, a finished run updates its import's counters)
holds whichever surface made the change.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from celery import current_app
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import NON_FIELD_ERRORS, ImproperlyConfigured, ValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.db import connection as db_connection
from django.db.models import (
    DO_NOTHING,
    SET_NULL,
    Case,
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    Func,
    IntegerField,
    JSONField,
    Max,
    Min,
    Q,
    QuerySet,
    RestrictedError,
    TextField,
    Value,
    When,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce, Concat, Extract, Floor
from django.utils.dateparse import parse_datetime

from common import database_clock, error_words, postgres, streaming

from . import (
    after_commit,
    alerts,
    credentials,
    history,
    import_locks,
    notifications,
    processed_files,
    revoked_tasks,
    rows,
    text,
    validation,
)
from .fresh_connection import on_a_fresh_connection
from .models import (
    Dataset,
    ImportRun,
    NotificationDefaults,
    Record,
    ScheduledImport,
    active_run_order,
)
from .validation import undeliverable_notifications

logger = logging.getLogger("importbeat.runs")

IMPORT_FIELDS = {"credential"} | {
    f.name
    for f in ScheduledImport._meta.get_fields()
    if getattr(f, "editable", False) and f.name not in {"id", "owner", "dataset"}
} - {
    "status", "total_runs", "successful_runs", "partial_runs", "failed_runs",
    "consecutive_failures",
    "last_run_at", "last_run_status", "last_success_at", "next_run_at", "created_at",
    "updated_at",
    "schedule_changed_at", "missed_ticks", "late_since", "reconciled_until",
}  # fmt: skip


EXECUTE_RUN = "importbeat.execute_run"
# What a broker that cannot take a message raises through Celery (kombu wraps most of it).
# kombu's pipelined publish (`producer.batch`) raises its own BatchPublishError for a Redis
# that refused the pipeline (full, a read-only replica) or dropped it midway.
BROKER_ERRORS = after_commit.BROKER_ERRORS
# What a client is told to wait before triggering again when the broker is down.
BROKER_RETRY_AFTER_SECONDS = 30


class BrokerUnavailable(Exception):
    """The broker did not take a run's message; `full` when it answered that it has no room."""

    def __init__(self, message: str, *, full: bool = False) -> None:
        super().__init__(message)
        self.full = full


class RunAlreadyActive(Exception):
    """A manual trigger met a queued or running run of the same import."""

    def __init__(self, run: ImportRun) -> None:
        super().__init__(f"run {run.pk} of this import is {run.status}")
        self.run = run


# --- imports ----------------------------------------------------------------------------------


def existing_dataset(owner: AbstractBaseUser, name: str) -> Dataset | None:
    """The owner's dataset called `name`, if there is one."""
    return Dataset.objects.filter(owner=owner, name=name).first()


def get_or_create_dataset(owner: AbstractBaseUser, name: str) -> Dataset:
    dataset, _ = Dataset.objects.get_or_create(owner=owner, name=name)
    return dataset


@transaction.atomic
def delete_records(records: QuerySet[Record]) -> int:
    """Delete records by hand (the admin); their datasets no longer match any imported file.

    The datasets are locked first, as an import's merge locks its dataset before it touches
    records: a deletion and a merge of one dataset take turns instead of deadlocking.

    Their kept field names stay as they are: a name no record holds any more is an empty
    column of the export, where reading them again scanned every record of the dataset (half a
    minute at two million wide records, past the web's statement limit, here in the admin's
    request and then again at every export).
    """
    dataset_ids = lock_datasets(records.order_by().values_list("dataset_id", flat=True).distinct())
    deleted = _delete_in_id_ranges(records.order_by())
    mark_datasets_changed(dataset_ids)
    _count_records_again(dataset_ids)
    return deleted


def recount_records(dataset_ids: Sequence[int]) -> None:
    """Count these datasets' records again and read their field names again, exactly: records
    written or deleted behind their writers' backs (a shell, SQL; `manage.py recount_records`,
    the suite's records made directly). The names are read by a scan of every record: not for
    a web request's statement limit on a big dataset."""
    _count_records_again(dataset_ids)
    with db_connection.cursor() as cursor:
        for dataset_id in dataset_ids:
            cursor.execute(_KEEP_FIELDS, [read_fields(dataset_id), dataset_id])


def _count_records_again(dataset_ids: Sequence[int]) -> None:
    with db_connection.cursor() as cursor:
        cursor.execute(_RECOUNT_RECORDS, [list(dataset_ids)])


def note_merge(
    dataset_id: int,
    applied_digest: str,
    applied_run_id: int | None,
    added: int,
    key_column: str,
    fields: Iterable[str] = (),
    *,
    every_record: bool = False,
) -> None:
    """A merge's mark on its dataset, in the merge's transaction: the file and run it now holds
    (`applied_digest`, blank when unknown), `added` records more (fewer when negative), keyed
    by `key_column`, and `fields`, the names its records got.

    `every_record`: the merge left no record it did not write or find unchanged (a first load,
    a sync of a file without a failed row), so the dataset's names are exactly `fields`.
    Otherwise they are added to the names kept, and unknown names (NULL) stay unknown: the
    records the merge did not touch may hold any others."""
    with db_connection.cursor() as cursor:
        cursor.execute(
            _NOTE_MERGE,
            {
                "digest": applied_digest,
                "run": applied_run_id,
                "added": added,
                "key": key_column,
                "fields": sorted(set(fields)),
                "exact": every_record,
                "id": dataset_id,
            },
        )


def read_fields(dataset_id: int) -> list[str]:
    """Every field name the dataset's records hold, sorted, read from the records themselves.

    Records written by one file share its columns, so the names of any one record are nearly
    always all of them: the whole dataset is then only searched for records holding another
    name (`data - names`, no set-returning function on every record). Listing every record's
    names was 2.4 s at 2 million short records; this is 0.7 s, and 24 µs a record 60 fields
    wide (each record's data is decompressed): the reason the names are kept (Dataset.fields).
    """
    with db_connection.cursor() as cursor:
        cursor.execute(_ONE_RECORDS_FIELDS, [dataset_id])
        names = [name for (name,) in cursor.fetchall()]
        cursor.execute(_OTHER_FIELDS, [names, dataset_id, names])
        return sorted(names + [name for (name,) in cursor.fetchall()])


def kept_fields(dataset_id: int) -> list[str] | None:
    """The dataset's kept field names (None: unknown, or the dataset is gone), as the
    caller's snapshot has them."""
    with db_connection.cursor() as cursor:
        cursor.execute(_KEPT_FIELDS, [dataset_id])
        row = cursor.fetchone()
    return row[0] if row else None


def fields_now(dataset_id: int) -> list[str]:
    """The dataset's field names in the caller's snapshot: kept, else read from its records."""
    kept = kept_fields(dataset_id)
    return read_fields(dataset_id) if kept is None else kept


def known_fields(dataset_id: int) -> list[str]:
    """The dataset's field names; unknown ones are read from its records once and kept.

    The read and the keeping are one REPEATABLE READ transaction, so the names kept are the
    records' as of its snapshot, and kept only while still unknown and unchanged since: a
    merge that committed after the snapshot (its new names not in it) updated the dataset's
    row, and keeping them then fails to serialize and keeps nothing; a merge in progress holds
    the row, which is skipped rather than waited for. Either way the next read scans again.
    Inside a caller's transaction (a test's), its snapshot is the one.
    """
    kept = kept_fields(dataset_id)
    if kept is not None:
        return kept
    outermost = not db_connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            with db_connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        kept = kept_fields(dataset_id)
        if kept is not None:
            return kept
        names = read_fields(dataset_id)
        try:
            with transaction.atomic(), db_connection.cursor() as cursor:
                cursor.execute(_CLAIM_UNKNOWN_FIELDS, [dataset_id])
                if cursor.fetchone():
                    cursor.execute(_KEEP_FIELDS, [names, dataset_id])
        except DatabaseError as error:
            if not _serialization_failure(error):
                raise
    return names


def _serialization_failure(error: BaseException) -> bool:
    """PostgreSQL's 40001: the row was changed by a transaction after the snapshot."""
    return any(getattr(link, "sqlstate", None) == "40001" for link in error_words.chain(error))


_RECOUNT_RECORDS = (
    f"UPDATE {Dataset._meta.db_table} d SET record_count ="
    f" (SELECT count(*) FROM {Record._meta.db_table} r WHERE r.dataset_id = d.id)"
    " WHERE d.id = ANY(%s)"
)
_NOTE_MERGE = (
    f"UPDATE {Dataset._meta.db_table} SET applied_digest = %(digest)s,"
    " applied_run_id = %(run)s, record_count = record_count + %(added)s,"
    " key_column = %(key)s, fields = CASE WHEN %(exact)s THEN %(fields)s::text[]"
    "  WHEN fields IS NULL THEN NULL"
    "  ELSE ARRAY(SELECT DISTINCT name FROM unnest(fields || %(fields)s::text[]) name"
    "   ORDER BY name) END"
    " WHERE id = %(id)s"
)
_ONE_RECORDS_FIELDS = (
    "SELECT jsonb_object_keys(data) FROM"
    f" (SELECT data FROM {Record._meta.db_table} WHERE dataset_id = %s LIMIT 1) one"
)
_OTHER_FIELDS = (
    "SELECT DISTINCT jsonb_object_keys(data - %s::text[])"
    f" FROM {Record._meta.db_table} WHERE dataset_id = %s AND data - %s::text[] <> '{{}}'::jsonb"
)
_KEPT_FIELDS = f"SELECT fields FROM {Dataset._meta.db_table} WHERE id = %s"
_KEEP_FIELDS = f"UPDATE {Dataset._meta.db_table} SET fields = %s::text[] WHERE id = %s"
_CLAIM_UNKNOWN_FIELDS = (
    f"SELECT 1 FROM {Dataset._meta.db_table} WHERE id = %s AND fields IS NULL"
    " FOR NO KEY UPDATE SKIP LOCKED"
)


def lock_datasets(dataset_ids: Iterable[int]) -> list[int]:
    """Lock these datasets' rows until the transaction ends; return the ids that still exist.

    Every writer of records takes this lock first (an import's merge, a deletion by hand), so
    writers of one dataset take turns, always in the same order. Readers are not blocked;
    deleting the dataset itself waits for the lock.
    """
    # Written once: the queryset's compilation cost more than the statement (rows.py).
    with db_connection.cursor() as cursor:
        cursor.execute(_LOCK_DATASETS, [list(dataset_ids)])
        return [pk for (pk,) in cursor.fetchall()]


_LOCK_DATASETS = (
    f"SELECT id FROM {Dataset._meta.db_table} WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE"
)


def lock_dataset_keyed(dataset_id: int) -> tuple[str, int] | None:
    """Lock one dataset's row (as lock_datasets); the column its records are keyed by, and
    how many there are; None when the dataset is gone. One statement: a merge's lock."""
    with db_connection.cursor() as cursor:
        cursor.execute(_LOCK_DATASET_KEYED, [dataset_id])
        return cursor.fetchone()


_SHARE_DATASETS = (
    f"SELECT id FROM {Dataset._meta.db_table} WHERE id = ANY(%s) ORDER BY id FOR SHARE"
)


_LOCK_DATASET_KEYED = (
    f"SELECT key_column, record_count FROM {Dataset._meta.db_table} WHERE id = %s FOR NO KEY UPDATE"
)


def mark_datasets_changed(dataset_ids: Iterable[int]) -> None:
    """The next import of these datasets merges its file even if it is the one applied last."""
    Dataset.objects.filter(pk__in=list(dataset_ids)).update(applied_digest="", applied_run=None)


class DatasetInUse(Exception):
    """A dataset that imports still write to cannot be deleted."""

    def __init__(self, imports: Sequence[ScheduledImport]) -> None:
        names = ", ".join(f"{imp.pk} ({imp.name})" for imp in imports)
        super().__init__(
            f"imports still write to this dataset: {names}; delete them or move them to "
            "another dataset first"
        )
        self.imports = list(imports)


def delete_dataset(dataset: Dataset) -> int:
    """Delete a dataset and its records; refused while an import writes to it.

    The dataset row is locked first, as a merge locks it before it touches records, so a
    deletion waits for a merge in progress instead of racing it. Returns the records deleted.
    """
    # Asked first without the lock too: a dataset in use is refused at once, not after the
    # merge in progress that holds the lock (a 409 waited 10 s at a million records).
    writers = list(dataset.imports.order_by("pk"))
    if writers:
        raise DatasetInUse(writers)
    with transaction.atomic():
        if not lock_datasets([dataset.pk]):
            return 0
        writers = list(dataset.imports.order_by("pk"))
        if writers:
            raise DatasetInUse(writers)
        records = _delete_in_id_ranges(Record.objects.filter(dataset_id=dataset.pk))
        try:
            dataset.delete()
        except RestrictedError as error:
            # An import created on this dataset since the check above.
            raise DatasetInUse(list(dataset.imports.order_by("pk"))) from error
    return records


def delete_records_of_datasets(dataset_ids: Iterable[int]) -> int:
    """Delete every record of these datasets (their owner is deleted), locked as a merge locks
    them, a range of ids per statement; in the caller's transaction."""
    locked = lock_datasets(sorted(dataset_ids))
    if not locked:
        return 0
    return _delete_in_id_ranges(Record.objects.filter(dataset_id__in=locked))


# Record ids per DELETE of many records: a few tenths of a second each.
RECORD_IDS_PER_DELETE = 500_000


def _delete_in_id_ranges(records: QuerySet[Record]) -> int:
    """Delete `records`, a range of ids per statement, in the caller's transaction.

    One DELETE of 25 million records would outlast the web worker's timeout (30 s), which
    killed the worker: a 502, the deletion rolled back and nothing said why. In ranges, the
    worker tells its arbiter it is alive after each (common/streaming.py) and the deletion
    takes as long as one DELETE (ranges of the primary key, each row visited once).
    """
    span = records.aggregate(low=Min("pk"), high=Max("pk"))
    low, high, deleted = span["low"], span["high"], 0
    while low is not None and low <= high:
        # Records have no signals and nothing refers to them: Django deletes them in one
        # statement, without reading them.
        deleted += records.filter(pk__gte=low, pk__lt=low + RECORD_IDS_PER_DELETE).delete()[0]
        low += RECORD_IDS_PER_DELETE
        streaming.alive()
    return deleted


@transaction.atomic
def create_import(owner: AbstractBaseUser, *, dataset: str, **fields: Any) -> ScheduledImport:
    """Validate and create an import with its dataset and its beat entry; what notifies is
    the owner's default (`PATCH /me`) unless given."""
    defaults = NotificationDefaults.objects.filter(user=owner).first()
    if defaults is not None and not {"notify_on", "notify_channels"} <= fields.keys():
        fields.setdefault("notify_on", list(defaults.notify_on))
        fields.setdefault("notify_channels", list(defaults.notify_channels))
        _refuse_undeliverable_defaults(fields)
    imp = ScheduledImport(owner=owner, dataset=get_or_create_dataset(owner, dataset), **fields)
    _full_clean(imp)
    imp.save()
    return imp


NAME_TAKEN = "you already have an import with this name"


def _full_clean(imp: ScheduledImport) -> None:
    """The import's model validation, its owner's name taken said on `name` as the API says
    it: two identical creates at once (a retried or hedged POST), the loser found the winner's
    row here and answered `{"__all__": ["Scheduled import with this Owner and Name already
    exists."]}`, Django's key and words."""
    try:
        imp.full_clean(exclude=["dataset"])
    except ValidationError as invalid:
        errors = getattr(invalid, "error_dict", None)
        taken = [e for e in (errors or {}).get(NON_FIELD_ERRORS, []) if e.code == "unique_together"]
        if not taken:
            raise
        rest = [e for e in errors[NON_FIELD_ERRORS] if e not in taken]
        said = {**errors, "name": [*errors.get("name", []), ValidationError(NAME_TAKEN)]}
        if rest:
            said[NON_FIELD_ERRORS] = rest
        else:
            del said[NON_FIELD_ERRORS]
        raise ValidationError(said) from None


def _refuse_undeliverable_defaults(fields: dict[str, Any]) -> None:
    """Defaults of webhooks alone (`PATCH /me`) on an import without a callback URL: refused.

    Each import has its own callback URL, so `PATCH /me` cannot check them; such an import was
    created notifying no one, and nothing said so.
    """
    nowhere = undeliverable_notifications(
        fields["notify_on"], fields["notify_channels"], fields.get("callback_url") or ""
    )
    if nowhere:
        raise ValidationError(
            {"notify_channels": [f"{nowhere} (these are your notification defaults, PATCH /me)"]}
        )


class ImportChanged(Exception):
    """An edit made against a version of the import (HTTP If-Match) that is no longer its own."""


def import_version(imp: ScheduledImport) -> str:
    """The version of what the import's owner set, as an HTTP entity tag: every save of the
    import, and every change of its status, makes a new one (the scheduler's counters none)."""
    return f'"{int(imp.updated_at.timestamp() * 1_000_000)}"'


def check_version(imp: ScheduledImport, if_version: str | None) -> None:
    """Refuse (ImportChanged) a change sent with If-Match tags `if_version` none of which is
    the version of `imp`, read locked. Every change the API makes asks: a DELETE or a pause
    sent with an older version deleted or paused an import another client had changed since.

    Compared strongly, as If-Match is (RFC 9110 13.1.1): a weak tag never matches."""
    if if_version is None:
        return
    tags = {tag.strip() for tag in if_version.split(",")}
    if "*" not in tags and import_version(imp) not in tags:
        raise ImportChanged(
            "the import changed since the version you sent in If-Match (now "
            f"{import_version(imp)}): read it again and send your change on it"
        )


@transaction.atomic
def update_import(
    imp: ScheduledImport,
    *,
    dataset: str | None = None,
    if_version: str | None = None,
    **fields: Any,
) -> ScheduledImport:
    """Change an import; its beat entry is re-scheduled in the same transaction. The fields
    given are applied to the import as it is now (locked), not as the caller read it: two
    edits of different fields (or an edit and a pause) wrote each other's fields back as they
    had read them, and the one that saved last undid the other, which had been told 200.

    `if_version` (an If-Match header's entity tags) makes the edit refused, ImportChanged, once
    the import is no longer at one of them: a PUT built from an older read undid another
    client's change."""
    unknown = set(fields) - IMPORT_FIELDS
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    datasets = _datasets_of_a_key_edit(imp, fields, dataset)
    asked, imp = imp, as_it_is_now(imp, datasets=datasets)
    if datasets is None and _changes_keys(
        (imp.key_column, imp.mode, imp.dataset.name), fields, dataset
    ):
        # Another edit changed the keys between the look above and the lock: this one, which
        # would change them back, did not wait for a merge (the datasets come before the import).
        raise ImportChanged(
            "the import's key column, mode or dataset changed while your edit was saved: read it"
            " again and send your change on it"
        )
    if _already(imp, fields, dataset):
        # The change asked is the import as it is (RFC 9110 13.1.1): a PUT retried after its
        # answer was lost, with the If-Match of its first try, was told 412 "the import
        # changed" of its own change; and a write that changed nothing made a new version.
        # Its beat entry is still put in step (no new version): "save it again" is how an
        # operator mends an entry deleted or disabled in django-celery-beat's admin.
        imp.sync_periodic_task(mend_only=True)
        return _now_as(asked, imp)
    check_version(imp, if_version)
    if errors := validation.edit_errors(imp, fields, defaults={}):
        raise ValidationError(errors)
    for name, value in fields.items():
        setattr(imp, name, value)
    if dataset is not None and dataset != imp.dataset.name:
        imp.dataset = get_or_create_dataset(imp.owner, dataset)
    _full_clean(imp)
    imp.save()
    return _now_as(asked, imp)


def _datasets_of_a_key_edit(
    imp: ScheduledImport, fields: dict[str, Any], dataset: str | None
) -> list[int] | None:
    """The dataset an edit moves `imp` to (if it exists, else none), when the edit changes one
    of KEY_FIELDS of the import as it is now; None when it changes none (as_it_is_now): a PUT
    of the description, which sends every field, waited for a merge in progress (review)."""
    now = (
        ScheduledImport.objects.filter(pk=imp.pk)
        .values_list("key_column", "mode", "dataset__name")
        .first()
    )
    if now is None or not _changes_keys(now, fields, dataset):
        return None
    if dataset is None or dataset == now[2]:
        return []
    return list(
        Dataset.objects.filter(owner_id=imp.owner_id, name=dataset).values_list("pk", flat=True)
    )


def _changes_keys(now: tuple[str, str, str], fields: dict[str, Any], dataset: str | None) -> bool:
    """Whether an edit changes the key column, mode or dataset of an import that has `now`
    (key column, mode, dataset name)."""
    key_column, mode, name = now
    return (
        fields.get("key_column", key_column) != key_column
        or fields.get("mode", mode) != mode
        or (dataset is not None and dataset != name)
    )


def _already(imp: ScheduledImport, fields: dict[str, Any], dataset: str | None) -> bool:
    """Whether every field of a change already holds its value in `imp`."""
    if dataset is not None and dataset != imp.dataset.name:
        return False
    return all(getattr(imp, name) == value for name, value in fields.items())


class StatusNotChanged(Exception):
    """A status change that does not apply to the import as it is (pausing a cancelled one)."""


def pause_import(imp: ScheduledImport, *, if_version: str | None = None) -> ScheduledImport:
    """Pause an active import (again: a paused one stays paused). A cancelled one is refused, as
    the admin's Pause leaves it: the API made it paused, its history saying so. Its scheduled
    runs not started yet are skipped (skip_scheduled_runs_not_started)."""
    with transaction.atomic():
        imp = _set_status(imp, ScheduledImport.Status.PAUSED, if_version)
        skip_scheduled_runs_not_started([imp.pk], database_clock.now())
    return imp


PAUSED_BEFORE_IT_STARTED = "skipped: the import was paused before this run started"


def skip_scheduled_runs_not_started(import_ids: list[int], moment: datetime) -> None:
    """End `skipped` the runs of these paused imports that their schedule queued (a tick's, a
    catch-up) and no worker has started yet, each said in the runs' log: taken by a worker after
    the pause (a backlog, a run waiting its turn), such a run fetched the source and wrote
    after the pause answered 200, and its retries went on. A manual or API run was asked for
    as such, and runs; so does a run already running or retrying (an attempt started)."""
    waiting = ImportRun.objects.filter(
        scheduled_import_id__in=import_ids,
        status=ImportRun.Status.QUEUED,
        started_at__isnull=True,
        trigger__in=(ImportRun.Trigger.SCHEDULE, ImportRun.Trigger.CATCHUP),
    )
    # A worker's claim is a conditional UPDATE of the same rows: it waits for this one and
    # then finds them no longer queued.
    locked = list(
        waiting.select_for_update()
        .annotate(parked_by=KeyTextTransform(PARKED_BY, "error_details"))
        .values_list(
            "scheduled_import_id", "pk", "trigger", "celery_task_id", "worker", "parked_by"
        )
    )
    if not locked:
        return
    ended = [(import_id, pk, trigger) for import_id, pk, trigger, *_ in locked]
    tasks = [(task_id, parked_by or worker) for *_, task_id, worker, parked_by in locked]
    transaction.on_commit(lambda: revoked_tasks.show_revoked(tasks))
    ImportRun.objects.filter(pk__in=[pk for _, pk, _ in ended]).update(
        status=ImportRun.Status.SKIPPED,
        finished_at=moment,
        duration_ms=0,
        error_message=PAUSED_BEFORE_IT_STARTED,
    )
    log_ended_unstarted(ended, ImportRun.Status.SKIPPED, PAUSED_BEFORE_IT_STARTED)


def resume_import(imp: ScheduledImport, *, if_version: str | None = None) -> ScheduledImport:
    return _set_status(imp, ScheduledImport.Status.ACTIVE, if_version)


def cancel_import(imp: ScheduledImport, *, if_version: str | None = None) -> ScheduledImport:
    """Stop scheduling the import and end its waiting runs, queued or retrying: a retry in its
    backoff is not another chance to run (a running attempt finishes)."""
    with transaction.atomic():
        imp = _set_status(imp, ScheduledImport.Status.CANCELLED, if_version)
        end_waiting_runs([imp.pk], database_clock.now())
    return imp


CANCELLED_WITH_IMPORT = "cancelled with its import"
OWNER_DEACTIVATED = "cancelled: its owner's account was deactivated"


def why_no_other_attempt(import_id: int) -> str | None:
    """Why a run of the import gets no other attempt, whatever its retries left: its import
    cancelled, or its owner's account deactivated, since it started. A running attempt
    finishes, but a retry fetched the source again after the cancel, or the account closed."""
    found = (
        ScheduledImport.objects.filter(pk=import_id)
        .values_list("status", "owner__is_active")
        .first()
    )
    if found is None:
        return None
    status, owner_active = found
    if status == ScheduledImport.Status.CANCELLED:
        return CANCELLED_WITH_IMPORT
    return None if owner_active else OWNER_DEACTIVATED


def end_waiting_runs(
    import_ids: list[int], moment: datetime, why: str = CANCELLED_WITH_IMPORT
) -> None:
    """End the waiting runs (queued or retrying) of these imports, cancelled `why`, each said in
    the runs' log (schedules.statuses cancels many imports at once; a deactivation too)."""
    waiting = ImportRun.objects.filter(
        scheduled_import_id__in=import_ids, status__in=WAITING_STATUSES
    )
    # A retry of a run whose rows committed (it failed after its merge) is over already:
    # it ends as its rows did, its file filed away (finish_run), not cancelled.
    for run in waiting.filter(rows_committed_at__isnull=False).select_for_update():
        finish_run(run, ImportRun.Status.CANCELLED, error=why)
    # A worker's claim is a conditional UPDATE of the same rows: it waits for this one and
    # then finds them no longer waiting.
    locked = list(
        waiting.filter(rows_committed_at__isnull=True)
        .select_for_update()
        .annotate(parked_by=KeyTextTransform(PARKED_BY, "error_details"))
        .values_list(
            "scheduled_import_id", "pk", "trigger", "celery_task_id", "worker", "parked_by"
        )
    )
    ended = [(import_id, pk, trigger) for import_id, pk, trigger, *_ in locked]
    tasks = [(task_id, parked_by or worker) for *_, task_id, worker, parked_by in locked]
    transaction.on_commit(lambda: revoked_tasks.show_revoked(tasks))
    # Its duration as finish_run says it: from its start (a retrying run had one), or none.
    # Left NULL, a retrying run cancelled with its import showed "Duration: -" between its
    # start and its end, and 1.6 s when cancelled alone.
    ran_for = ExpressionWrapper(
        Value(moment, output_field=DateTimeField()) - F("started_at"),
        output_field=DurationField(),
    )
    ImportRun.objects.filter(pk__in=[pk for _, pk, _ in ended]).update(
        status=ImportRun.Status.CANCELLED,
        finished_at=moment,
        error_message=why,
        duration_ms=Coalesce(Cast(Floor(Extract(ran_for, "epoch") * 1000), IntegerField()), 0),
    )
    log_ended_unstarted(ended, ImportRun.Status.CANCELLED, why)


OWNER_INACTIVE = "its owner's account is deactivated: reactivate the account first"


class OwnerInactive(ValidationError):
    """A run or a resume asked of an import whose owner's account is deactivated: a 400 on
    `status` for the API, a line of its own for the admin's actions."""

    def __init__(self) -> None:
        super().__init__({"status": [OWNER_INACTIVE]})


# The words of a run put back to wait its turn, under the owner's cap (tasks.fairness) or
# behind its import's run in progress (overlap: queue): its message is held by the worker that
# deferred it (schedules.reconcile). The claim that starts it clears them.
WAITING_ITS_TURN = "waiting its turn:"
# The worker that parked a run in its owner's line (error_details, until the run is claimed):
# its task's last word in Flower came from there (revoked_tasks).
PARKED_BY = "parked_by"


def note_waiting(run: ImportRun, why: str) -> None:
    """Say on a waiting run why it waits (`why` follows WAITING_ITS_TURN), and that it is alive:
    touched, it is no lost message for reconciliation."""
    ImportRun.objects.filter(pk=run.pk, status__in=WAITING_STATUSES).update(
        error_message=f"{WAITING_ITS_TURN} {why}", heartbeat_at=database_clock.now()
    )


@transaction.atomic
def _set_status(imp: ScheduledImport, status: str, if_version: str | None) -> ScheduledImport:
    asked, imp = imp, as_it_is_now(imp)
    if imp.status == status:
        return _now_as(asked, imp)  # (a pause retried, as a PUT: update_import)
    check_version(imp, if_version)
    if status == ScheduledImport.Status.ACTIVE and not _owner_is_active(imp.owner_id):
        # Read after the import's lock, in a statement of its own: a resume that waited for a
        # deactivation to pause the import saw the owner as it was before, and won.
        raise OwnerInactive()
    if status == ScheduledImport.Status.PAUSED and imp.status == ScheduledImport.Status.CANCELLED:
        raise StatusNotChanged(
            "the import is cancelled: resume it to schedule it again (only an active import "
            "can be paused)"
        )
    imp.status = status
    imp.save()
    return _now_as(asked, imp)


def _now_as(asked: ScheduledImport, saved: ScheduledImport) -> ScheduledImport:
    """The caller's instance, its columns as `saved` (the row as it was changed) holds them."""
    if asked is not saved:
        for field in ScheduledImport._meta.concrete_fields:
            setattr(asked, field.attname, getattr(saved, field.attname))
        asked.loaded()
    return asked


def _owner_is_active(owner_id: int) -> bool:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(pk=owner_id, is_active=True).exists()


def as_it_is_now(imp: ScheduledImport, *, datasets: Iterable[int] | None = None) -> ScheduledImport:
    """`imp` read again, locked until the caller's transaction ends (update_import, the
    admin's save).

    With `datasets` (an edit that may change KEY_FIELDS: the dataset it moves to, if any), the
    import's dataset and those are locked first (FOR SHARE), in a merge's order (dataset, then
    import): the edit waits for a merge in progress into either, and is judged on what it
    wrote. Judged before it, a key column changed on an empty dataset during its first merge
    was taken, the merge keyed the records by the old one, and every run after it failed
    (race hunt); the merge refuses an edit committed before its own lock (tasks.engine.merge).
    """
    if imp.pk is None:
        return imp
    if datasets is not None:
        now = ScheduledImport.objects.filter(pk=imp.pk).values_list("dataset_id", flat=True)
        with db_connection.cursor() as cursor:
            cursor.execute(_SHARE_DATASETS, [sorted({*now, *datasets} - {None})])
    return (
        ScheduledImport.objects.select_for_update(of=("self",))
        .select_related("owner", "dataset")
        .get(pk=imp.pk)
    )


def set_notification_defaults(user: AbstractBaseUser, **fields: Any) -> NotificationDefaults:
    """Change what notifies by default for the user's new imports (checked as an import's)."""
    from .validation import NOTIFY_CHANNELS, NOTIFY_EVENTS, validate_choices

    defaults, _ = NotificationDefaults.objects.get_or_create(user=user)
    errors: dict[str, list[str]] = {}
    for name, choices in (("notify_on", NOTIFY_EVENTS), ("notify_channels", NOTIFY_CHANNELS)):
        if name in fields:
            try:
                validate_choices(fields[name], choices)
            except ValidationError as error:
                errors[name] = error.messages
            setattr(defaults, name, fields[name])
    if not errors and defaults.notify_on and not defaults.notify_channels:
        # Refused here as on an import: stored, they made every import created later a 400 on
        # a field its creator never sent.
        errors["notify_channels"] = [
            undeliverable_notifications(defaults.notify_on, defaults.notify_channels, "")
        ]
    if errors:
        raise ValidationError(errors)
    defaults.save()
    return defaults


@transaction.atomic
def delete_import(imp: ScheduledImport, *, if_version: str | None = None) -> None:
    """Delete the import, its runs and (through the post_delete signal) its beat entry.

    A run that is running stops at its next safe point, finding its run gone, and nothing of it
    lands (cancel_requested): the dataset stays as it was.

    Its runs go first, in a few statements (`delete_runs`): Django's cascade reads every run
    into memory to set to NULL what points at it, then deletes them a hundred at a time, and an
    import of a year of minute runs (500,000) was still at it when gunicorn killed the request
    after 30 s: it could never be deleted. The cascade then finds no run left (nor misses one
    queued meanwhile) and deletes the rest as before, with its signals.

    The import is locked first, as beat's dispatch and a trigger lock it before they add a
    run: a run added between the runs' deletion and the import's made the deletion a 500 (its
    foreign key), the import left in place. And in that order (import, then runs), as a cancel
    takes them, so that the two never wait for each other.
    """
    try:
        check_version(as_it_is_now(imp), if_version)
    except ScheduledImport.DoesNotExist:
        return  # deleted meanwhile
    delete_runs(imp.runs.all())
    imp.delete()


# Where each statement of runs_deletion() reads the runs to delete.
SELECTED_RUNS = "{selected runs}"


DELETED_TICKS = f"""
    SELECT scheduled_import_id, max(scheduled_for) FROM {ImportRun._meta.db_table}
     WHERE id IN ({SELECTED_RUNS}) AND scheduled_for IS NOT NULL
     GROUP BY scheduled_import_id ORDER BY scheduled_import_id
"""

# The tasks of the waiting runs among those deleted, each with the worker that spoke last of it
# (revoked_tasks.show_revoked); the statuses written out, as the partial indexes of runs in
# progress name them (retention deletes finished runs only: its batches find none here).
# SELECTED_RUNS stands for the waiting ones among the runs deleted (waiting_tasks).
WAITING_TASKS = f"""
    SELECT celery_task_id, worker, error_details ->> %s FROM {ImportRun._meta.db_table}
     WHERE id IN ({SELECTED_RUNS})
       AND status IN ({rows.literals([ImportRun.Status.QUEUED, ImportRun.Status.RETRYING])})
"""

RECONCILED_PAST_DELETED_TICKS = f"""
    UPDATE {ScheduledImport._meta.db_table} AS i SET reconciled_until = d.tick
      FROM unnest(%s::bigint[], %s::timestamptz[]) AS d(id, tick)
     WHERE i.id = d.id AND (i.reconciled_until IS NULL OR i.reconciled_until < d.tick)
"""


def waiting_tasks(runs: QuerySet[ImportRun]) -> tuple[str, list[Any]]:
    """WAITING_TASKS for the waiting runs among `runs`, and its parameters.

    Read through a selection of their own (the runs' filter and the waiting statuses in one
    WHERE): an import's or an owner's waiting runs are a few entries of run_active_idx. Read
    as the waiting runs among all the runs selected, every waiting run of the table was joined
    with every run deleted: 58 ms (now 6) of deleting an import with 100,000 runs when 100,000
    runs waited elsewhere (an outage's backlog), 227 ms (now 80) and a scan of the run table
    for an owner's, at 1,000,000 runs (tests/bench/bench_deleted_runs_tasks_at_scale.py)."""
    waiting = runs.filter(status__in=WAITING_STATUSES).order_by().values("pk")
    selected, params = waiting.query.sql_with_params()
    return WAITING_TASKS.replace(SELECTED_RUNS, selected), [PARKED_BY, *params]


@transaction.atomic
def delete_runs(runs: QuerySet[ImportRun], *, ended_only: bool = False) -> int:
    """Delete `runs` as Django's cascade would, in a few statements however many they are
    (`runs_deletion`, each reading `runs` as a subquery); how many went. `ended_only`: the
    caller selected ended runs only (retention), which never wait again (a retry is a new run),
    so their waiting runs' tasks are not looked for: 15 ms of a batch of 5,000 at 1,000,000 runs
    (tests/bench/bench_deleted_runs_tasks_at_scale.py), some 3 s of a first pass.

    A scheduled run deleted leaves its tick reconciled: the tick was dispatched, and
    reconciliation, finding it without a run, took it for a missed tick (a catch-up run and a
    "late" alert after an operator deleted a queued run in the admin to stop it)."""
    selected, params = runs.order_by().values("pk").query.sql_with_params()
    deleted = 0
    with db_connection.cursor() as cursor:
        # A run in its backoff or parked in its owner's line, deleted (with its import, its
        # owner, or alone in the admin), kept RETRY in Flower until its countdown ended, or for
        # good when parked: nothing sends a deleted parked run again (endings hunt).
        if not ended_only:
            cursor.execute(*waiting_tasks(runs))
            waiting = [(task_id, parked_by or worker) for task_id, worker, parked_by in cursor]
            if waiting:
                transaction.on_commit(lambda: revoked_tasks.show_revoked(waiting))
        cursor.execute(DELETED_TICKS.replace(SELECTED_RUNS, selected), list(params))
        ticks = cursor.fetchall()
        for statement in runs_deletion():
            used = statement.count(SELECTED_RUNS)
            cursor.execute(statement.replace(SELECTED_RUNS, selected), list(params) * used)
            deleted = cursor.rowcount
        if ticks:
            # The runs first, then their imports, in id order, as a worker ending a run locks
            # them (run, then import) and every writer of many imports does (import_locks):
            # the imports locked first, a run deleted as its worker ended it was a deadlock
            # (review).
            ids = [import_id for import_id, _tick in ticks]
            import_locks.lock_in_id_order(ScheduledImport.objects.filter(pk__in=ids))
            cursor.execute(RECONCILED_PAST_DELETED_TICKS, [ids, [tick for _id, tick in ticks]])
    return deleted


@cache
def runs_deletion() -> list[str]:
    """The statements that delete the runs SELECTED_RUNS stands for, as Django's cascade would:
    every reference to one of them set to NULL where its field says SET_NULL, left where it says
    DO_NOTHING (a record keeps the id of the run that wrote it), then the runs. Derived from the
    models, so a new reference is handled, or refused here if it asks for anything else."""
    quote = db_connection.ops.quote_name
    runs_table = quote(ImportRun._meta.db_table)
    statements = []
    for relation in rows.references_to(ImportRun):
        on_delete, field = relation.on_delete, relation.field
        if on_delete is DO_NOTHING:
            continue
        if on_delete is not SET_NULL:
            raise ImproperlyConfigured(
                f"{field} references a run with {on_delete.__name__}: teach runs_deletion it"
            )
        table, column = quote(field.model._meta.db_table), quote(field.column)
        # A retry deleted with the run it retried gets its NULL too: leaving the runs about to
        # go out (`AND id NOT IN (…)`) was a hashed NOT IN on a scan of the whole run table, at
        # every batch (0.5 s a batch at 1,000,000 runs, 6 ms without; retention's catch-up
        # quadratic in the table).
        statements.append(f"UPDATE {table} SET {column} = NULL WHERE {column} IN ({SELECTED_RUNS})")
    return [*statements, f"DELETE FROM {runs_table} WHERE id IN ({SELECTED_RUNS})"]


# --- runs -------------------------------------------------------------------------------------


_quote = db_connection.ops.quote_name
LOCK_IMPORT_SQL = (
    f"SELECT status FROM {_quote(ScheduledImport._meta.db_table)} WHERE id = %s FOR UPDATE"
)
# Checked by the insert itself, after the lock: a run committed while this trigger waited for
# the lock is seen (READ COMMITTED takes a new snapshot for each statement).
_ACTIVE = rows.literals(ImportRun.ACTIVE_STATUSES)
NO_ACTIVE_RUN_SQL = (
    f"NOT EXISTS (SELECT 1 FROM {_quote(ImportRun._meta.db_table)}"
    f" WHERE scheduled_import_id = %s AND status IN ({_ACTIVE}))"
)


def enqueue_run(
    imp: ScheduledImport,
    *,
    trigger: str = ImportRun.Trigger.API,
    user: AbstractBaseUser | None = None,
    retry_of: ImportRun | None = None,
) -> ImportRun:
    """Queue a run now; refuse while another run of the import is queued or running.

    The message goes to the broker once the run is committed. If the broker refuses it, the
    run is withdrawn (deleted: nothing carries it, and it would block the next trigger with a
    409) and BrokerUnavailable tells the caller to try again later. Should the withdrawal fail
    too, the run is left for reconciliation to send at its next pass (send_run marked it).
    """
    event = "run retried" if retry_of is not None else "run triggered"
    details = {"retry_of": retry_of.pk} if retry_of is not None else {}
    run = ImportRun(
        scheduled_import=imp, trigger=trigger, triggered_by=user,
        celery_task_id=str(uuid.uuid4()), retry_of=retry_of,
    )  # fmt: skip
    return _enqueue(imp, run, event, user, details)


@cache
def _may_queue_sql() -> str:
    """No run of the import is active, and its owner's account is: checked by the insert
    itself, after the import's lock, so a deactivation committed meanwhile is seen."""
    from django.contrib.auth import get_user_model

    users = _quote(get_user_model()._meta.db_table)
    imports = _quote(ScheduledImport._meta.db_table)
    return (
        f"{NO_ACTIVE_RUN_SQL} AND EXISTS (SELECT 1 FROM {users} u JOIN {imports} i"
        " ON u.id = i.owner_id WHERE i.id = %s AND u.is_active)"
    )


def queue_next_delivery(imp: ScheduledImport, *, after: int, path: str) -> ImportRun:
    """Queue a run of a queue of deliveries (tasks.deliveries) for the delivery at `path`, now
    that run `after` imported the one before it. A `catchup` run, as the runs of missed ticks
    are: it catches up with what was delivered. enqueue_run's refusals apply."""
    run = ImportRun(
        scheduled_import=imp, trigger=ImportRun.Trigger.CATCHUP, celery_task_id=str(uuid.uuid4())
    )
    return _enqueue(
        imp, run, history.NEXT_DELIVERY, None, {"after": after, "file": path}, only_active=True
    )


class ImportNotActive(Exception):
    """The import was paused or cancelled meanwhile: its queue waits for its owner."""


def _enqueue(
    imp: ScheduledImport,
    run: ImportRun,
    event: str,
    user: AbstractBaseUser | None,
    details: dict[str, Any],
    only_active: bool = False,
) -> ImportRun:
    entry = None
    try:
        with transaction.atomic():
            # Under the import's lock, so two triggers at once queue one run. The lock and the
            # insert are statements written once (rows.py): compiling them as querysets cost
            # a fifth of a trigger's CPU.
            with db_connection.cursor() as cursor:
                cursor.execute(LOCK_IMPORT_SQL, [imp.pk])
                found = cursor.fetchone()
                if found is None:
                    raise ScheduledImport.DoesNotExist(f"import {imp.pk} was deleted")
                if only_active and found[0] != ScheduledImport.Status.ACTIVE:
                    # (paused or cancelled while the caller looked: read under the lock, as a
                    # pause or a cancel writes it)
                    raise ImportNotActive(f"import {imp.pk} is {found[0]}")
            _insert_or_refuse(imp, run)
            # The event commits with its run: one commit, one wait for the disk, per trigger.
            entry = history.record_event(imp, event, user, run=run.pk, **details)
            transaction.on_commit(lambda: send_run(run))
    except BrokerUnavailable:
        with contextlib.suppress(DatabaseError), transaction.atomic():
            ImportRun.objects.filter(pk=run.pk, status=ImportRun.Status.QUEUED).delete()
            if entry is not None:
                entry.delete()
        raise
    return run


def _insert_or_refuse(imp: ScheduledImport, run: ImportRun) -> None:
    """Insert the run, the import locked, unless another is active or the owner is
    deactivated (deactivation pauses the import, holding its lock: a trigger that waited for
    it queued a run after all)."""
    for _attempt in range(2):
        if rows.insert_where(run, _may_queue_sql(), [imp.pk, imp.pk]):
            return
        active = imp.runs.filter(status__in=ImportRun.ACTIVE_STATUSES)
        active = active.order_by(*active_run_order()).first()
        if active is not None:
            raise RunAlreadyActive(active)
        if not _owner_is_active(imp.owner_id):
            raise OwnerInactive()
        # The run it met ended meanwhile (a worker skips a stale queued tick without the
        # import's lock): it told an active owner that the account was deactivated.
    # Not reached: nothing but this function queues a run of the import while it is locked.
    raise RuntimeError(f"run of import {imp.pk} not queued: try again")


class RunNotActionable(Exception):
    """A cancel of a run that is over, or a retry of one that did not fail."""


def cancel_run(run: ImportRun, user: AbstractBaseUser | None = None) -> ImportRun:
    """Cancel one run. A queued or retrying run ends `cancelled` at once (its message, when it
    comes, finds nothing to do); a running attempt is asked to stop and ends `cancelled` at its
    next safe point (tasks.engine.progress): before its merge, which is one transaction, the data is
    as before the run; once the merge committed, the run ends as it went.
    """
    by = f" by {user.get_username()}" if user is not None else ""
    with transaction.atomic():
        # The import first, as cancelling or deleting the import takes it before its runs:
        # run-then-import here against import-then-runs there deadlocked (a 500, the import's
        # cancel not done).
        ScheduledImport.objects.select_for_update().filter(pk=run.scheduled_import_id).first()
        # Locked: a worker's claim (a conditional UPDATE) waits, then sees the run cancelled.
        locked = ImportRun.objects.select_for_update().get(pk=run.pk)
        asked_before = locked.cancel_requested_at is not None
        if locked.status in WAITING_STATUSES:
            finish_run(locked, ImportRun.Status.CANCELLED, error=f"cancelled{by}")
            if locked.status == ImportRun.Status.CANCELLED:
                # The worker that spoke last of its task: the one that parked it, if any.
                told_by = locked.error_details.get(PARKED_BY) or locked.worker
                task = [(locked.celery_task_id, told_by)]
                transaction.on_commit(lambda: revoked_tasks.show_revoked(task))
        elif locked.status == ImportRun.Status.RUNNING:
            if not asked_before:
                locked.cancel_requested_at = database_clock.now()
                locked.error_message = f"cancel requested{by}; stopping at the next safe point"
                # Who asked, for the words the run ends with (cancel_requested).
                locked.error_details = {**locked.error_details, "cancelled_by": by.strip()}
                locked.save(update_fields=["cancel_requested_at", "error_message", "error_details"])
        else:
            raise RunNotActionable(f"run {run.pk} is {locked.status}: only a queued, running "
                                   "or retrying run can be cancelled")  # fmt: skip
    if asked_before:
        return locked  # a second ask of a run stopping already: its history has the first
    history.record_event(locked.scheduled_import, "run cancelled", user, run=locked.pk)
    logger.info("run cancel import=%s run=%s status=%s%s", locked.scheduled_import_id, locked.pk,
                locked.status, by)  # fmt: skip
    return locked


# What stops a running attempt whose run is gone: its import was deleted (delete_import deletes
# its runs), or the run alone (the admin). Nothing of the attempt may land after that.
DELETED_WHILE_RUNNING = "its import was deleted while it ran; the dataset was not changed"
RUN_DELETED_WHILE_RUNNING = "it was deleted while it ran; the dataset was not changed"
# What stops an attempt whose run row is under another task now (is_attempt_of): the sweep sent
# the run again, the attempt presumed lost, or a database restored from a backup gave its id to
# a new run. "Deleted" was untrue of the first.
TAKEN_OVER_WHILE_RUNNING = (
    "its run was taken over while it ran (sent again as lost, or another run under its id "
    "after a database restore); nothing of this attempt was written"
)
# What stops an attempt whose run was ended under it: the sweep presumed it lost, its worker in
# fact alive, and failed or cancelled the run (its retries spent, its import cancelled). Its rows
# committed under a run that said "failed: the worker running attempt 1 was lost" (sweepnote hunt).
ENDED_WHILE_RUNNING = (
    "its run was ended while it ran, its worker taken for lost; nothing of this attempt was written"
)
GONE_WHILE_RUNNING = (
    DELETED_WHILE_RUNNING, RUN_DELETED_WHILE_RUNNING, TAKEN_OVER_WHILE_RUNNING, ENDED_WHILE_RUNNING,
)  # fmt: skip


def is_attempt_of(row_task_id: str, task_id: str) -> bool:
    """Whether the run row whose task is `row_task_id` is still the run of the attempt made as
    task `task_id` ("" when the attempt names none). Every run keeps the task id it is sent
    and claimed under; a row under the same id with another task is another run: a database
    restored from a backup gives the ids of the runs created since to new runs, and an
    attempt that lived through the restore wrote its outcome onto the new run that took its
    run's id (restore hunt: bob's run ended `succeeded` with alice's 30,000 rows, never run)."""
    return not task_id or not row_task_id or row_task_id == task_id


def cancel_requested(run_id: int, import_id: int | None = None, task_id: str = "") -> str | None:
    """If someone asked the running attempt of this run to stop (cancel_run), or deleted it
    (alone, or with its import `import_id`), the words the run ends with; None otherwise. One
    indexed read: workers ask at every progress report. An attempt that names its task
    (`task_id`) finds its run taken over when the row under its id is under another task now
    (is_attempt_of).
    """
    found = (
        ImportRun.objects.filter(pk=run_id)
        .values_list(
            "cancel_requested_at", "error_details", "celery_task_id", "status", "rows_committed_at"
        )
        .first()
    )
    if found is not None and not is_attempt_of(found[2], task_id):
        return TAKEN_OVER_WHILE_RUNNING
    if found is None:
        if import_id is not None and ScheduledImport.objects.filter(pk=import_id).exists():
            return RUN_DELETED_WHILE_RUNNING
        return DELETED_WHILE_RUNNING
    requested_at, asked, _task, status, committed_at = found
    if requested_at is None:
        if status in ImportRun.FINAL_STATUSES and committed_at is None:
            # Ended without rows while an attempt of it runs: the sweep took it for lost. (One
            # its owner had asked to stop, then the sweep ended, ended as asked: its words.)
            return ENDED_WHILE_RUNNING
        return None
    by = asked.get("cancelled_by", "") if isinstance(asked, dict) else ""
    return f"cancelled{' ' + by if by else ''} while running; the dataset was not changed"


def retry_run(
    run: ImportRun,
    user: AbstractBaseUser | None = None,
    trigger: str = ImportRun.Trigger.API,
) -> ImportRun:
    """Run a failed or timed-out run's import again now, as a new run that names it
    (`retry_of`), once: a run retried already is refused, naming its retry (the admin, asked
    again over a selection, retried the same runs at every choice; the API retried what the
    admin refused). RunAlreadyActive and BrokerUnavailable as for any manual trigger."""
    if run.status not in FAILED_STATUSES:
        raise RunNotActionable(
            f"run {run.pk} is {run.status}: only a failed or timed-out run can be retried"
        )
    if retried := retries_that_count(run.retries.all()).values_list("pk", flat=True).first():
        raise RunNotActionable(retried_already(run.pk, retried))
    return enqueue_run(run.scheduled_import, trigger=trigger, user=user, retry_of=run)


def retries_that_count(retries: QuerySet[ImportRun]) -> QuerySet[ImportRun]:
    """The retries that make a run retried already: a retry cancelled or skipped never ran,
    and its run could be retried neither by itself (retried already) nor by the retry (not
    failed)."""
    dropped = (ImportRun.Status.CANCELLED, ImportRun.Status.SKIPPED)
    return retries.exclude(status__in=dropped).order_by("pk")


def retried_already(run_id: int, retry_id: int) -> str:
    return f"run {run_id} was retried already, as run {retry_id}: retry that one if it failed too"


def dispatch_scheduled_tick(
    import_id: int,
    scheduled_for: str | datetime | None,
    trigger: str = ImportRun.Trigger.SCHEDULE,
) -> ImportRun | None:
    """Turn one tick into at most one run and queue it (the `dispatch_scheduled_import` task).

    Beat creates its runs itself (schedules.dispatch); this serves messages of that task still
    queued by an older beat, and code that dispatches one tick. The run is keyed by (import,
    tick): a second dispatch of the same tick meets the unique constraint and does nothing.
    """
    imp = ScheduledImport.objects.filter(pk=import_id).first()
    if imp is None or imp.status != ScheduledImport.Status.ACTIVE:
        return None
    if isinstance(scheduled_for, str):
        scheduled_for = parse_datetime(scheduled_for)
    tick = scheduled_for or imp.tick_for(database_clock.now())
    try:
        with transaction.atomic():
            run = ImportRun.objects.create(
                scheduled_import=imp,
                trigger=trigger,
                scheduled_for=tick,
                celery_task_id=str(uuid.uuid4()),
            )
            send_run_on_commit(run)
    except IntegrityError:
        logger.info("tick already dispatched import=%s tick=%s", import_id, tick.isoformat())
        return None
    # The tick beat is due to dispatch is kept: next_runs() starts at the next run listed,
    # past an overdue tick from which beat still counts the ticks missed.
    due = imp.next_run_at or imp.next_runs(1)[0]
    ScheduledImport.objects.filter(pk=imp.pk).update(next_run_at=due)
    return run


def run_message(run: ImportRun) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """The args, kwargs and options of a run's execute_run message: one builder for every
    sender (the API, beat, reconciliation), so a run's message is the same whoever sends it.

    The kwargs name the import, so Flower's task list says which import a task is; the options
    are the import's time limits (the hard one leaves the soft one time to record the timeout).
    """
    imp = run.scheduled_import
    options = {"soft_time_limit": imp.timeout_seconds, "time_limit": imp.timeout_seconds + 30}
    return [run.pk], {"import_id": imp.pk, "import_name": imp.name}, options


def send_run(run: ImportRun) -> None:
    """Put the run's message on the broker: the one function that does for one run.

    With its `task-sent` event, so that Flower shows a run someone asked for at once, before a
    worker takes it. When the broker cannot take it, the run is marked for reconciliation to
    send again at its next pass (within MAINTENANCE_INTERVAL_SECONDS of the broker coming
    back, not after the grace period), and BrokerUnavailable is raised.
    """
    send_runs([run], sent_events=True)


def send_run_on_commit(run: ImportRun) -> None:
    """send_run once the run's row is committed; a broker that is down leaves it to
    reconciliation."""

    def send() -> None:
        with contextlib.suppress(BrokerUnavailable):
            send_run(run)

    transaction.on_commit(send)


def send_again_at_next_reconcile(run_ids: list[int], why: str) -> None:
    """Runs whose message the broker refused (`why`: why, in words): backdate the clock
    reconciliation reads (untouched_since) past its grace period, so that its next pass sends
    them again (schedules.reconcile.recover_lost_messages); a retry sent again and refused
    again is flagged refused again (note_retry_not_sent), whatever the broker holds of its
    task; a queued run says so (message_not_sent_note, MESSAGE_NOT_SENT)."""
    backdated = database_clock.now() - timedelta(seconds=settings.MISSED_TICK_GRACE_SECONDS + 1)
    # A queued run's words are its note, unless it says it waits its turn (WAITING_ITS_TURN:
    # reconciliation reads that note, and its worker holds its message).
    unsent = Q(status=ImportRun.Status.QUEUED) & (
        Q(error_message="") | Q(error_details__has_key=MESSAGE_NOT_SENT)
    )
    with contextlib.suppress(DatabaseError):
        ImportRun.objects.filter(pk__in=run_ids, status__in=WAITING_STATUSES).update(
            heartbeat_at=backdated,
            error_message=Case(
                When(unsent, then=Value(message_not_sent_note(why))),
                default=F("error_message"),
                output_field=TextField(),
            ),
            error_details=Case(
                When(
                    status=ImportRun.Status.RETRYING,
                    then=_flagged_retry_not_sent(),
                ),
                When(unsent, then=_flagged_message_not_sent(why)),
                default=F("error_details"),
            ),
        )  # fmt: skip


def send_runs(runs: Sequence[ImportRun], *, sent_events: bool = False) -> None:
    """Send runs' messages (`run_message`), pipelined through one producer.

    Built with Celery's own message builder and sender (`app.amqp`), without what `send_task`
    adds and a run does not need: its per-call option resolution, and its subscription to the
    task's result, which nobody who sends a run reads (a web process subscribed to, then left,
    a channel per trigger). `send_task` cost about 0.4 ms a message at beat's volume; this, a
    quarter of it. Beat's batches go without a `task-sent` event each (a worker's
    `task-received` tells Flower the same a moment later); `sent_events` adds them. When the
    broker cannot take them, the runs are left to reconciliation and BrokerUnavailable is
    raised.
    """
    from celery.utils.nodenames import anon_nodename

    origin = anon_nodename()
    app = current_app
    amqp = app.amqp
    try:
        with app.producer_or_acquire() as producer, producer.batch(500):
            for index, run in enumerate(runs):
                args, kwargs, options = run_message(run)
                message = amqp.as_task_v2(
                    run.celery_task_id, EXECUTE_RUN, args, kwargs,
                    time_limit=options["time_limit"], soft_time_limit=options["soft_time_limit"],
                    origin=origin, argsrepr=repr(args), kwargsrepr=repr(kwargs),
                    ignore_result=True, create_sent_event=sent_events,
                )  # fmt: skip
                # The queue is declared with the first message; declaring it again for each
                # one cost a third of the publishing time.
                declare = None if index == 0 else ()
                amqp.send_task_message(producer, EXECUTE_RUN, message, declare=declare)
    except BROKER_ERRORS as error:
        refused = error_words.refusal(error)
        logger.warning(
            "run messages not sent runs=%s: %s", len(runs), after_commit.why_for_the_log(error)
        )
        send_again_at_next_reconcile([run.pk for run in runs], after_commit.why_not_sent(error))
        if refused == error_words.FULL:
            raise BrokerUnavailable("the task queue is full", full=True) from error
        raise BrokerUnavailable("the task queue is unavailable") from error


WAITING_STATUSES = (ImportRun.Status.QUEUED, ImportRun.Status.RETRYING)


class Claim(StrEnum):
    CLAIMED = "claimed"
    # The run is no longer waiting (finished, cancelled, or another worker has it).
    GONE = "gone"
    # Another run of the same import is running or backing off (run_one_in_progress_per_import).
    BUSY = "busy"


def claim_run(
    run: ImportRun, *, task_id: str = "", worker: str = "", reclaim: bool = False
) -> Claim:
    """Start an attempt: move the run to running with one conditional UPDATE.

    `reclaim` also accepts a run that is already `running`: the caller holds the import's
    lease, so the worker of that attempt is gone (its lease expired) and the message came back
    (reject on worker lost, or the maintenance sweep). The lost attempt is recorded and counted.
    """
    statuses = [ImportRun.Status.QUEUED, ImportRun.Status.RETRYING]
    if reclaim:
        statuses.append(ImportRun.Status.RUNNING)
    # Heartbeats are judged by another worker's sweep: the database's time (common.database_clock).
    now = database_clock.now()
    params = [
        ImportRun.Status.RUNNING.value,
        run.started_at or now,
        worker or socket.gethostname(),
        task_id or run.celery_task_id,
        now,
        now,
        run.pk,
        [status.value for status in statuses],
    ]
    try:
        # One statement, atomic by itself: a savepoint only inside a caller's transaction.
        savepoint = transaction.atomic() if db_connection.in_atomic_block else None
        with savepoint or contextlib.nullcontext(), db_connection.cursor() as cursor:
            cursor.execute(_claim_sql(), params)
            claimed = cursor.fetchone()
    except IntegrityError:
        return Claim.BUSY
    if claimed is None:
        return Claim.GONE
    was_running = run.status == ImportRun.Status.RUNNING
    # The run as the claim left it; the import (and its dataset) the caller loaded with it
    # stay: the attempt reads them.
    imp = run.scheduled_import
    rows.refresh(run, claimed)
    run.scheduled_import = imp
    if was_running:
        _record_attempt(run, "the worker running this attempt was lost", run.attempts - 1)
        run.save(update_fields=["error_details"])
    logger.info(
        "run started import=%s run=%s attempt=%s trigger=%s worker=%s",
        run.scheduled_import_id, run.pk, run.attempts, run.trigger, run.worker,
    )  # fmt: skip
    return Claim.CLAIMED


@dataclass(frozen=True)
class Unclaimed:
    """What a claim changes of a run that a claim given up puts back (`unclaim`)."""

    status: str
    attempts: int
    started_at: datetime | None

    @classmethod
    def of(cls, run: ImportRun) -> Unclaimed:
        return cls(run.status, run.attempts, run.started_at)


def unclaim(run: ImportRun, before: Unclaimed, task_id: str) -> bool:
    """Put `run` back as it was `before` the task `task_id` claimed it, if that claim landed:
    its task gave it up at its time limit (runner.database_or_requeue) and hands its message
    back. The attempt's other marks (its worker, its progress zeroed) stay, as a retried
    run's do."""
    put_back = ImportRun.objects.filter(
        pk=run.pk,
        status=ImportRun.Status.RUNNING,
        celery_task_id=task_id,
        attempts=before.attempts + 1,
    ).update(
        status=before.status,
        attempts=before.attempts,
        started_at=before.started_at,
        heartbeat_at=database_clock.now(),
    )
    return put_back == 1


@cache
def _claim_sql() -> str:
    """The claim's conditional UPDATE, answering with the run as it leaves it (no second
    read). The attempt names its steps and counts its progress anew."""
    return (
        f"UPDATE {ImportRun._meta.db_table} r SET status = %s, started_at = %s,"
        " attempts = r.attempts + 1, worker = %s, celery_task_id = %s, heartbeat_at = %s,"
        # Its progress too: an attempt's figures showed until the next one's first report, and
        # the API's live figures, taken only when ahead of the row's, went backwards.
        " attempt_started_at = %s, phase = '', bytes_read = 0, bytes_total = NULL, rows_read = 0,"
        # The note of a wait is over (note_waiting), and so is that of a message not sent (a
        # pipelined publish the broker refused midway had delivered it); a retry's error stays
        # until the attempt ends.
        f" error_message = CASE WHEN starts_with(r.error_message, '{WAITING_ITS_TURN}')"
        f" OR r.error_details ? '{MESSAGE_NOT_SENT}' THEN '' ELSE r.error_message END,"
        f" error_details = r.error_details - '{PARKED_BY}' - '{RETRY_NOT_SENT}'"
        f" - '{MESSAGE_NOT_SENT}'"
        f" WHERE r.id = %s AND r.status = ANY(%s) RETURNING {rows.columns(ImportRun, 'r')}"
    )


def load_run(run_id: int) -> ImportRun | None:
    """The run with its import and the import's dataset, in one statement written once."""
    with db_connection.cursor() as cursor:
        cursor.execute(_load_run_sql(), [run_id])
        row = cursor.fetchone()
    if row is None:
        return None
    run, imp, dataset = rows.instances(row, ImportRun, ScheduledImport, Dataset)
    imp.dataset = dataset
    run.scheduled_import = imp
    return run


@cache
def _load_run_sql() -> str:
    return (
        f"SELECT {rows.columns(ImportRun, 'r')}, {rows.columns(ScheduledImport, 'i')},"
        f" {rows.columns(Dataset, 'd')} FROM {ImportRun._meta.db_table} r"
        f" JOIN {ScheduledImport._meta.db_table} i ON i.id = r.scheduled_import_id"
        f" JOIN {Dataset._meta.db_table} d ON d.id = i.dataset_id WHERE r.id = %s"
    )


def _record_attempt(
    run: ImportRun,
    error: str,
    attempt: int | None = None,
    retry_in: float | None = None,
    **notes: str,
) -> None:
    attempts = run.error_details.get("attempts", [])
    entry: dict[str, Any] = {
        "attempt": run.attempts if attempt is None else attempt,
        "error": error,
        "at": database_clock.now().isoformat(),
    }
    if retry_in is not None:
        entry["retry_in"] = round(retry_in, 1)
    entry.update(notes)
    attempts.append(entry)
    run.error_details = {**run.error_details, "attempts": attempts}


def heartbeat(run_id: int, task_id: str) -> None:
    """The run's attempt (of the task `task_id`) is alive; the maintenance sweep leaves it
    alone. Only its own task's row, as every write of an attempt (is_attempt_of): an attempt
    that lived through a database restore kept the new run that took its id alive, whose own
    worker was lost, and the sweep never sent it again (restore2 hunt)."""
    ImportRun.objects.filter(
        pk=run_id, celery_task_id=task_id, status=ImportRun.Status.RUNNING
    ).update(heartbeat_at=database_clock.now())


def skip_run(run: ImportRun, reason: str) -> bool:
    """End a run that never started: another run of its import was in progress, or took the
    file after it was queued (schedules.backlog)."""
    now = database_clock.now()
    skipped = ImportRun.objects.filter(pk=run.pk, status=ImportRun.Status.QUEUED).update(
        status=ImportRun.Status.SKIPPED, finished_at=now, duration_ms=0, error_message=reason
    )
    if skipped:
        log_ended_unstarted([(run.scheduled_import_id, run.pk, run.trigger)], "skipped", reason)
    return skipped == 1


def log_ended_unstarted(runs: Iterable[tuple[int, int, str]], status: str, reason: str) -> None:
    """The `importbeat.runs` line of each run (import id, run id, trigger) that ended without
    starting, skipped or cancelled, whatever ended it: those ended many at once (a cancelled
    import's queue, ticks folded behind a waiting run, missed ticks) had no line at all."""
    for import_id, run_id, trigger in runs:
        logger.info(
            "run %s import=%s run=%s trigger=%s reason=%s",
            status, import_id, run_id, trigger, text.printable(reason),
        )  # fmt: skip


def recover_lost_run(run_id: int, stale_before: datetime) -> ImportRun | None:
    """Resolve a run left `running` by a dead worker: queue another attempt, or fail it.

    Called by the maintenance sweep for runs whose heartbeat stopped before `stale_before`
    while nobody holds the import's lease. The row is locked and re-checked, so a heartbeat
    that arrived meanwhile wins.
    """
    with transaction.atomic():
        # A row another session holds is passed over, for the next sweep: waited for, one run
        # an operator held in psql (or whose own attempt hung on its import's lock) held the
        # sweep and its worker slot until its time limit, every pass, and every lost run after
        # it, lost notification and owner's line waited with it.
        run = _locked_running_run(run_id, skip_locked=True, heartbeat_at__lt=stale_before)
        if run is None:
            if ImportRun.objects.filter(
                pk=run_id, status=ImportRun.Status.RUNNING, heartbeat_at__lt=stale_before
            ).exists():
                logger.warning("run=%s looks lost but another database session holds its row "
                               "or its import's: not recovered at this sweep", run_id)  # fmt: skip
            return None
        imp = run.scheduled_import
        ended = _end_if_done_or_cancelled(run)
        if ended is not None:
            return ended
        silent = int((database_clock.now() - run.heartbeat_at).total_seconds())
        lived = (run.heartbeat_at - (run.attempt_started_at or run.heartbeat_at)).total_seconds()
        if lived >= imp.timeout_seconds:
            # It was alive until its time was up: the hard time limit killed it, too stuck for
            # the soft one to be handled (a worker that outlived it ends it at once,
            # end_killed_run; this is for one that died with it).
            return _end_timed_out_killed(run)
        error = f"the worker running attempt {run.attempts} was lost (no heartbeat for {silent}s)"
        if stopped := why_no_other_attempt(imp.pk):
            return finish_run(run, ImportRun.Status.CANCELLED, error=f"{stopped} ({error})")
        if run.attempts > imp.max_retries:
            return finish_run(run, ImportRun.Status.FAILED, error=error)
        # The attempt's task is kept with its entry: should its worker be alive after all (cut
        # off from the database and Redis for a while), the attempt finds its entry by it when
        # it stops, and says so there (note_sent_again_while_alive).
        _record_attempt(
            run, error, sent_again=SENT_AGAIN_BY_THE_SWEEP.format(silent=silent),
            task=run.celery_task_id,
        )  # fmt: skip
        run.status = ImportRun.Status.RETRYING
        run.error_message = f"{error}; queued again"
        run.heartbeat_at = database_clock.now()
        # A new message id: the lost one may still come back after the visibility timeout, and
        # is then refused by the claim.
        run.celery_task_id = str(uuid.uuid4())
        run.save(
            update_fields=[
                "status", "error_message", "error_details", "heartbeat_at", "celery_task_id",
            ]
        )  # fmt: skip
        send_run_on_commit(run)
    logger.warning("run recovered import=%s run=%s attempt=%s", imp.pk, run.pk, run.attempts)
    return run


SENT_AGAIN_BY_THE_SWEEP = (
    "sent again by the sweep: no heartbeat for {silent}s, and no worker held its import's lease"
)
# What became of an attempt the sweep presumed lost whose worker was alive (note_sent_again_while_
# alive): its writes are refused by its task (is_attempt_of), or by its run's end, so nothing ran
# twice and nothing landed under a run that says it failed.
STOPPED_ALIVE = (
    "its worker was alive after all: when it was heard from again, it found the run sent again "
    "and stopped this attempt; nothing of this attempt was written to the dataset"
)
STOPPED_ALIVE_ENDED = (
    "its worker was alive after all: when it was heard from again, it found the run ended as "
    "lost and stopped this attempt; nothing of this attempt was written to the dataset"
)
# A run the sweep ended otherwise than failed as lost (timed out: its time was up while its
# worker was silent; cancelled: its import cancelled meanwhile), in the run's own words: it
# said "ended as lost" of a run the log, the API and the admin call timed out (sweep3 hunt).
STOPPED_ALIVE_ENDED_AS = (
    "its worker was alive after all: when it was heard from again, it found the run ended as "
    "{status} ({why}) and stopped this attempt; nothing of this attempt was written to the "
    "dataset"
)


def stopped_alive_ended_words(status: str, why: str) -> str:
    """What the entry of an attempt stopped alive says of its run, ended under it as `status`
    with the words `why` (note_sent_again_while_alive)."""
    if status == ImportRun.Status.FAILED:
        return STOPPED_ALIVE_ENDED
    return STOPPED_ALIVE_ENDED_AS.format(status=ImportRun.Status(status).label.lower(), why=why)


def note_sent_again_while_alive(run: ImportRun) -> bool:
    """Say on the run that its attempt (`run.attempts`, of the task `run.celery_task_id`),
    presumed lost by the sweep (recover_lost_run), was alive and stopped: its worker was cut off
    from the database and Redis for a while, then back. Its writes were refused, and nothing
    said so: the run log showed the attempt "lost" and the next one, Flower the first task
    ended "taken over" (sweepnote hunt). The note goes on the attempt's own entry: found by its
    task when the run was sent again under another; by its number when the run, still under
    its task, was ended as lost (out of retries, its import cancelled). A run whose entries
    name no such task, under another task, is another run under its id (a database restored
    from a backup) and is left alone. False when there was nothing to note."""
    task_id = run.celery_task_id
    if not task_id:
        return False

    def note() -> dict[str, Any] | None:
        with transaction.atomic():
            found = (
                ImportRun.objects.select_for_update()
                .filter(pk=run.pk)
                .values_list("error_details", "celery_task_id", "status", "error_message")
                .first()
            )
            if found is None:
                return None
            details, row_task, status, why = found
            attempts = (details or {}).get("attempts") or []
            entry = next(
                (a for a in attempts if isinstance(a, dict) and a.get("task") == task_id), None
            )
            words = STOPPED_ALIVE
            if entry is None and row_task == task_id and status in ImportRun.FINAL_STATUSES:
                words = stopped_alive_ended_words(status, why)
                entry = next(
                    (
                        a for a in reversed(attempts)
                        if isinstance(a, dict) and a.get("attempt") == run.attempts
                    ),
                    None,
                )  # fmt: skip
                if entry is None:  # a cancelled run lists no attempt for its end
                    entry = {"attempt": run.attempts}
                    attempts.append(entry)
            if entry is None or "ended" in entry:
                return None
            entry["ended"] = words
            entry["ended_at"] = database_clock.now().isoformat()
            ImportRun.objects.filter(pk=run.pk).update(
                error_details={**details, "attempts": attempts}
            )
            return entry

    entry = on_a_fresh_connection(note, f"run={run.pk} its stopped attempt not noted")
    if entry is None:
        return False
    logger.warning(
        "run %s: attempt %s was taken for lost by the sweep while its worker was alive; it "
        "stopped, and nothing of it was written", run.pk, entry.get("attempt"),
    )  # fmt: skip
    return True


def with_notes_of(locked: dict[str, Any] | None, details: dict[str, Any]) -> dict[str, Any]:
    """`details` (an attempt's, as it read them at its claim) with the notes written on the run
    since (`locked`, as the row holds them now): what an earlier attempt sent again while alive
    wrote on its entry (note_sent_again_while_alive) was overwritten by the next attempt's
    retry or counts."""
    noted = {
        (a.get("attempt"), a.get("at")): a
        for a in (locked or {}).get("attempts") or []
        if isinstance(a, dict) and "ended" in a
    }
    # The run's own notes (a resend by reconciliation, how the sweep told Flower), as the row
    # holds them: no attempt writes them.
    kept = {k: v for k, v in (locked or {}).items() if k in RUN_NOTE_KEYS}
    if not noted:
        return {**details, **kept} if kept else details
    attempts = [
        noted.get((a.get("attempt"), a.get("at")), a) if isinstance(a, dict) else a
        for a in details.get("attempts") or []
    ]
    return {**details, **kept, "attempts": attempts}


# A queued run's message that reconciliation sent again (schedules.reconcile._mark_resent):
# why, and when. A retry's is said on its failed attempt's entry (`retry_sent_again`); a
# queued run has no entry, and its resend was said nowhere but the reconcile pass's log line.
RUN_SENT_AGAIN = "sent_again"
RUN_SENT_AGAIN_AT = "sent_again_at"
# How the end of a lost attempt's task was told to Flower (tasks.lost_tasks.end_lost_task):
# {"task": its id, "told": whether the event left, "by": the worker it was told as}, and
# "stored": false while a told end is not stored in the result backend (note_lost_task_end_stored).
# The attempt, alive after all, ends its task by it when it stops: as told, or, when the event
# could not leave (the broker away at that moment), telling the end itself.
LOST_TASK_END = "lost_task_end"
RUN_NOTE_KEYS = frozenset({RUN_SENT_AGAIN, RUN_SENT_AGAIN_AT, LOST_TASK_END})


def note_lost_task_end(run_id: int, task_id: str, told: bool, reporter: str) -> None:
    """Say on run `run_id` whether the end of its lost attempt's task `task_id` reached Flower
    (LOST_TASK_END). One statement that leaves the rest of the run's details as they are now."""
    note = Value({LOST_TASK_END: {"task": task_id, "told": told, "by": reporter}}, JSONField())
    ImportRun.objects.filter(pk=run_id).update(
        error_details=Func(
            F("error_details"), note, template="%(expressions)s", arg_joiner=" || ",
            output_field=JSONField(),
        )
    )  # fmt: skip


def claim_lost_task_end(run_id: int, task_id: str, by: str) -> bool:
    """Take the telling of the end of `task_id`, a lost attempt of run `run_id` whose end nobody
    told yet (LOST_TASK_END told false), noted told by `by` in the same statement: of two that
    would tell it (two sweeps at once, or a sweep and the attempt alive after all), one does,
    where both told it (two ends of one task in Flower: reviewC hunt). Whether it was taken."""
    untold = {LOST_TASK_END: {"task": task_id, "told": False}}
    note = Value({LOST_TASK_END: {"task": task_id, "told": True, "by": by}}, JSONField())
    return bool(
        ImportRun.objects.filter(pk=run_id, error_details__contains=untold).update(
            error_details=Func(
                F("error_details"), note, template="%(expressions)s", arg_joiner=" || ",
                output_field=JSONField(),
            )
        )
    )  # fmt: skip


def note_lost_task_end_stored(run_id: int, task_id: str, stored: bool) -> None:
    """Say on run `run_id` whether the end of `task_id`, its lost attempt's task whose event
    left (LOST_TASK_END told), is stored in the result backend: one not stored (the backend away
    or silent at that pass) is stored by a later sweep (tasks.lost_tasks.store_unstored_ends),
    where it kept the attempt's PROGRESS a day, Flower and the run log having the end (results3
    hunt). An end still to tell is stored when it is told: only a told one's is noted."""
    noted = {LOST_TASK_END: {"task": task_id, "told": True}}
    # Set inside the note: an attempt alive after all may rewrite the rest of the run's details
    # meanwhile (its counts, its attempts).
    path = Func(Value(f"{{{LOST_TASK_END},stored}}"), template="%(expressions)s::text[]")
    ImportRun.objects.filter(pk=run_id, error_details__contains=noted).update(
        error_details=Func(
            F("error_details"), path, Value(stored, JSONField()), function="jsonb_set",
            output_field=JSONField(),
        )
    )  # fmt: skip


def lost_task_end_told(run: ImportRun, task_id: str) -> bool | None:
    """Whether the sweep (or whoever ended the run as lost) told Flower the end of `task_id`,
    an attempt of `run`: None when it noted nothing of that task."""
    details = run.error_details if isinstance(run.error_details, dict) else {}
    note = details.get(LOST_TASK_END)
    if not isinstance(note, dict) or note.get("task") != task_id:
        return None
    return bool(note.get("told"))


def time_limit_words(imp: ScheduledImport, applied: float | None, killed: bool = False) -> str:
    """What a run stopped by its time limit says: the limit it ran under, its message's (set
    when it was first sent; a retry and a wait keep it), and the import's own when it changed
    since. The import's was said as the one exceeded: "600s" of a run stopped after 3."""
    applied = applied or imp.timeout_seconds
    words = f"the run exceeded its {applied:g}s time limit"
    if applied != imp.timeout_seconds:
        words += f" (set when it was queued; the import's is now {imp.timeout_seconds}s)"
    return f"{words} (killed)" if killed else words


def end_killed_run(
    run_id: int, task_id: str, limit_seconds: float | None = None
) -> ImportRun | None:
    """End the attempt `task_id` of a run that its worker killed at its hard time limit, as the
    sweep would have two lease periods later (tasks.killed_runs); `limit_seconds` is the soft
    limit it ran under. None when that attempt no longer runs: the sweep, or another attempt,
    got there first."""
    with transaction.atomic():
        run = _locked_running_run(run_id, celery_task_id=task_id)
        if run is None:
            return None
        return _end_if_done_or_cancelled(run) or _end_timed_out_killed(run, limit_seconds)


def _locked_running_run(run_id: int, skip_locked: bool = False, **still: Any) -> ImportRun | None:
    """The run with its import, locked, if it is still `running` as `still` says (and, with
    `skip_locked`, no other session holds it)."""
    return (
        ImportRun.objects.select_for_update(skip_locked=skip_locked)
        .select_related("scheduled_import")
        .filter(pk=run_id, status=ImportRun.Status.RUNNING, **still)
        .first()
    )


def _end_if_done_or_cancelled(run: ImportRun) -> ImportRun | None:
    """A run whose attempt died, whatever killed it: done when its rows had committed, whatever
    came after; cancelled when asked to stop (no other attempt). None otherwise."""
    if run.rows_committed_at is not None:
        return finish_run(run, committed_status(run))
    if run.cancel_requested_at is not None:
        # In the runner's words for such a run (who asked, and that nothing landed): a stuck run
        # killed at its time limit, or found lost by the sweep, said "cancelled" alone.
        words = cancel_requested(run.pk) or "cancelled"
        return finish_run(run, ImportRun.Status.CANCELLED, error=words)
    return None


def _end_timed_out_killed(run: ImportRun, limit_seconds: float | None = None) -> ImportRun:
    words = time_limit_words(run.scheduled_import, limit_seconds, killed=True)
    return finish_run(run, ImportRun.Status.TIMED_OUT, error=words)


def untouched_since(stale_before: datetime) -> Q:
    """Runs not touched since `stale_before` (heartbeat, or queued time when never touched):
    a waiting run touched since then is alive (its retry's countdown, a worker that holds it)."""
    return Q(heartbeat_at__lt=stale_before) | Q(
        heartbeat_at__isnull=True, queued_at__lt=stale_before
    )


@dataclass
class RunCounts:
    rows_read: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    rows_deleted: int = 0
    rows_failed: int = 0
    row_errors: list[dict[str, Any]] = field(default_factory=list)


# How much of a bad row's value its row error keeps (tasks.engine.validate cuts it there). A
# value cut in the middle of a secret ends with the secret's beginning: hidden too.
ROW_VALUE_CHARS = 200
# A traceback kept for staff (error_details): Python's own are a few KB.
TRACEBACK_CHARS = 50_000


# What the importer notes on its run while it works: its step (the dashboard's phase), its
# progress, and which file it took. Kept on the run object as it goes, and written with the
# next progress report (once the run has lasted long enough to be seen:
# tasks.engine.progress), with the counts its rows commit with, and with its end.
RUN_NOTES = (
    "phase", "bytes_read", "bytes_total", "rows_read", "file_digest", "source_etag",
    "source_last_modified",
)  # fmt: skip


def run_notes(run: ImportRun) -> dict[str, Any]:
    return {name: getattr(run, name) for name in RUN_NOTES}


def record_progress(run: ImportRun) -> None:
    """Store what the importer noted on a running run (RUN_NOTES), touching nothing else; on
    the attempt's own run only (heartbeat): an attempt that lived through a database restore
    showed its progress on bob's queued run, which took its id (rows_read 5,313 of alice's).
    And while it runs: an attempt the sweep ended as lost, alive after all, wrote its progress
    on the ended run before its safe point stopped it (a failed run's rows_read changed after
    its end)."""
    ImportRun.objects.filter(
        pk=run.pk, celery_task_id=run.celery_task_id, status=ImportRun.Status.RUNNING
    ).update(**run_notes(run))


def record_source_file(run: ImportRun, path: str) -> None:
    """Note which file the run reads when its source names several (a drop folder's glob), on
    the attempt's own run only (record_progress)."""
    run.source_file = path[:1024]
    ImportRun.objects.filter(pk=run.pk, celery_task_id=run.celery_task_id).update(
        source_file=run.source_file
    )


def mark_retrying(run: ImportRun, error: str, countdown: float, traceback: str = "") -> bool:
    """Record a failed attempt that will be retried after `countdown` seconds; `traceback`
    (of a failure its message could not name) is kept for staff, as finish_run keeps it.
    Neither holds the import's credential (without_secrets).

    False when there is nothing to retry: the attempt failed after its rows and counts
    committed (a connection lost while the staging tables were dropped). The run is then
    finished from those counts at once, with the failure among its attempts, instead of
    showing `retrying` through a backoff for a retry that would only finish it the same way.
    Or the run ended meanwhile (the sweep took the attempt for lost): it stays as it ended.
    """
    error, traceback = _as_stored(without_secrets(run.scheduled_import, (error, traceback)))
    _record_attempt(run, error, retry_in=countdown)
    if traceback:
        run.error_details = {**run.error_details, "traceback": traceback}
    status = ImportRun.Status.RETRYING
    message = f"attempt {run.attempts} failed, retrying in {countdown:.0f}s: {error}"
    # Reconciliation looks for a lost retry message only once its countdown is over.
    heartbeat_at = database_clock.now() + timedelta(seconds=countdown)

    def mark() -> int:
        with transaction.atomic():
            # Only a run still running: one the sweep ended as lost meanwhile (its worker alive
            # after all) became `retrying` again and ran a second time, its end told twice.
            attempt_of = ImportRun.objects.filter(
                pk=run.pk,
                status=ImportRun.Status.RUNNING,
                rows_committed_at__isnull=True,
                celery_task_id=run.celery_task_id,
            )
            locked = attempt_of.select_for_update().values_list("error_details", flat=True)
            if not locked:
                return 0
            run.error_details = with_notes_of(locked[0], run.error_details)
            return attempt_of.update(
                status=status,
                error_message=message,
                error_details=run.error_details,
                heartbeat_at=heartbeat_at,
            )

    marked = on_a_fresh_connection(mark, f"run retry not written run={run.pk}")
    if not marked:
        finish_run(run, committed_status(run), error=error, traceback=traceback)
        return False
    run.status, run.error_message, run.heartbeat_at = status, message, heartbeat_at
    return True


# The flag, in error_details, of a retrying run whose retry the broker refused
# (note_retry_not_sent): until reconciliation sends it (schedules.reconcile) or a claim.
RETRY_NOT_SENT = "retry_not_sent"


def note_retry_not_sent(run_id: int, broker: str) -> str:
    """Say on retrying run `run_id` that the broker refused its retry (`broker`: why, in
    words), and return what it says.

    The note is also what tells reconciliation that the retry is lost, whatever the broker
    holds under the run's task id: the attempt's own delivery, its acknowledgement lost with
    the worker's connection to a full broker, stayed there and looked like the retry for 30
    minutes (STALE_QUEUED_SECONDS). The run still counts as waiting from the end of its
    countdown (mark_retrying): the retry goes no earlier than it would have."""
    note = (
        f"its retry was not sent, {broker}: reconciliation sends it once it is due and the"
        " broker takes messages"
    )
    with contextlib.suppress(DatabaseError):
        ImportRun.objects.filter(pk=run_id, status=ImportRun.Status.RETRYING).update(
            error_message=Concat(F("error_message"), Value(f" ({note})")),
            error_details=_flagged_retry_not_sent(),
        )  # fmt: skip
    return note


def _flagged_retry_not_sent() -> Func:
    """A run's error_details with the flag of note_retry_not_sent."""
    flag = Value({RETRY_NOT_SENT: True}, JSONField())
    return Func(F("error_details"), flag, template="%(expressions)s", arg_joiner=" || ")


def without_retry_not_sent() -> Func:
    """A run's error_details without the flag of note_retry_not_sent."""
    return Func(
        F("error_details"), Value(RETRY_NOT_SENT), template="%(expressions)s",
        arg_joiner=" - ", output_field=JSONField(),
    )  # fmt: skip


def retry_not_sent(run: ImportRun) -> bool:
    """Whether `run` waits for a retry the broker refused (note_retry_not_sent): a flag of its
    own, not its words, which quote the source's (a reason phrase could say anything)."""
    return run.status == ImportRun.Status.RETRYING and bool(run.error_details.get(RETRY_NOT_SENT))


# The flag, in error_details, of a queued run whose first message the broker refused, with why
# in words (send_again_at_next_reconcile): until reconciliation sends it or a claim, as a
# retry's (RETRY_NOT_SENT). A flag of its own: reconciliation believes the broker about it (a
# message under its task id is its own, which a pipelined publish the broker refused midway
# may have delivered), where a refused retry's task id is also its attempt's.
MESSAGE_NOT_SENT = "message_not_sent"


def message_not_sent_note(why: str) -> str:
    """What a queued run whose message the broker refused says (`why`: why, in words), as a
    refused retry says it (note_retry_not_sent)."""
    return (
        f"its message was not sent, {why}: reconciliation sends it once the broker takes messages"
    )


def _flagged_message_not_sent(why: str) -> Func:
    """A run's error_details with the flag of a message not sent, saying `why`."""
    flag = Value({MESSAGE_NOT_SENT: why}, JSONField())
    return Func(F("error_details"), flag, template="%(expressions)s", arg_joiner=" || ")


def message_not_sent(run: ImportRun) -> bool:
    """Whether queued `run` waits for its first message, which the broker refused."""
    return run.status == ImportRun.Status.QUEUED and bool(run.error_details.get(MESSAGE_NOT_SENT))


def without_message_not_sent() -> Func:
    """A run's error_details without the flag of a message not sent."""
    return Func(
        F("error_details"), Value(MESSAGE_NOT_SENT), template="%(expressions)s",
        arg_joiner=" - ", output_field=JSONField(),
    )  # fmt: skip


COUNT_FIELDS = (
    "rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_deleted", "rows_failed",
)  # fmt: skip
FINISH_FIELDS = [
    "status", "finished_at", "duration_ms", "error_message", "error_details", *COUNT_FIELDS,
]  # fmt: skip
# What finish_run writes on the run row.
RUN_END_FIELDS = (*FINISH_FIELDS, *RUN_NOTES)
GOOD_STATUSES = ImportRun.GOOD_STATUSES
FAILED_STATUSES = ImportRun.FAILED_STATUSES


def durable_commit() -> None:
    """Make the transaction in progress wait for the disk at its commit.

    A worker's connection commits asynchronously (project/worker_connections.py): its
    bookkeeping does not wait for the disk. A run's rows and its outcome do, whatever the
    connection's setting or its role's: once acknowledged, they survive a crash of the
    database server (postgres.durable_level).
    """
    if not db_connection.in_atomic_block:
        return
    level = postgres.durable_level(db_connection)
    if level != getattr(db_connection, "session_synchronous_commit", "on"):
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT set_config('synchronous_commit', %s, true)", [level])


def record_committed_counts(run: ImportRun, counts: RunCounts) -> bool:
    """Write an attempt's counts on its run, inside the transaction that commits its rows.

    Committed together, the rows and their counts cannot disagree: whatever happens to the
    attempt afterwards, the run is finished from these (finish_run, claim_committed_run). That
    transaction is durable (durable_commit). The run's notes (RUN_NOTES: the file it took)
    commit with them.

    This is also the run's last safe point (cancel_run): when someone asked it to stop, nothing
    is written and False tells the caller to roll its rows back. The UPDATE's own row lock
    decides: a cancel committed before it is seen, one that waits for it comes too late.
    """
    durable_commit()
    fields = {name: getattr(counts, name) for name in COUNT_FIELDS}
    details = {**run.error_details}
    if counts.row_errors:
        details["rows"] = shown_row_errors(run.scheduled_import, counts)
    task_id, locked_details = _locked_task(run.pk)
    if not is_attempt_of(task_id, run.celery_task_id):
        return False  # another run under its id: its rows roll back (stop_if_cancelled)
    details = with_notes_of(locked_details, details)
    values = {**run_notes(run), **fields, "error_details": details}
    written = rows.update(
        ImportRun,
        run.pk,
        {**values, "rows_committed_at": database_clock.now()},
        # Nor on a run ended under it (ENDED_WHILE_RUNNING): its rows roll back.
        f"cancel_requested_at IS NULL AND status = '{ImportRun.Status.RUNNING.value}'",
    )
    return written == 1


def _locked_task(run_id: int) -> tuple[str, dict[str, Any] | None]:
    """The task id and error details of the run row `run_id`, locked until the caller's
    transaction ends (("", None) when there is none: the UPDATE after it finds no row
    either)."""
    found = (
        ImportRun.objects.select_for_update()
        .filter(pk=run_id)
        .values_list("celery_task_id", "error_details")
        .first()
    )
    return found if found else ("", None)


def finish_with_rows(run: ImportRun, counts: RunCounts) -> bool:
    """End a run in the transaction that commits its rows, instead of writing its counts there
    and its outcome in a transaction of its own (record_committed_counts, then finish_run).

    For a small file (tasks.engine.merge): the second transaction cost its run a commit
    waiting for the disk, a `SET LOCAL` and a second write of its row, a tenth of its time
    (issue 15). The run, its import's counters, its notifications and its
    drop-folder file follow as finish_run has them, and the in-memory `run` and the log line
    once the caller's transaction commits: a merge that then fails leaves the run as the
    runner finds it (retried, or finished). Also the last safe point, as
    record_committed_counts: when someone asked the run to stop (or it ended meanwhile),
    nothing is written and False tells the caller to roll its rows back; the row lock of the
    run read with its import decides, as there.
    """
    status = outcome_of(counts.rows_read, counts.rows_failed)
    finished = _finish_once(
        run.pk, status, counts, "", "", run_notes(run), with_rows=True, task_id=run.celery_task_id
    )
    if finished is None:
        return False
    transaction.on_commit(lambda: _ended(run, finished))
    return True


def committed_status(run: ImportRun) -> str:
    """The status of a run whose rows committed, from its stored counts."""
    return outcome_of(run.rows_read, run.rows_failed)


EVERY_ROW_REFUSED = (
    "every row of the file was refused ({failed:,} bad rows; the row errors say why): nothing "
    "landed"
)


def outcome_of(rows_read: int, rows_failed: int) -> str:
    """A run that read its file whole: `succeeded`, `partial` when some rows were refused
    (the good ones landed), `failed` when every one was. A file whose every row was refused
    (a partner's new date format) was `partial`, ended the failure streak, and never alerted."""
    if rows_failed and rows_failed >= rows_read:
        return ImportRun.Status.FAILED
    return ImportRun.Status.PARTIAL if rows_failed else ImportRun.Status.SUCCEEDED


def finish_run(
    run: ImportRun,
    status: str,
    *,
    counts: RunCounts | None = None,
    error: str = "",
    traceback: str = "",
) -> ImportRun:
    """Close the run and fold its outcome into the import's counters, atomically.

    Retried on a fresh connection when the database connection fails (unless a caller's
    transaction is open: then the caller's own retry applies). A run already finished (a try
    whose commit went through but whose answer was lost) is left as it is. A run whose rows
    committed is finished from the counts stored with them, never failed; a good run's
    drop-folder file moves to processed/ once its end is committed (schedules.processed_files).
    `traceback` (an unexpected error's) is kept in `error_details` for staff. The notes on
    `run` (RUN_NOTES: the step it reached, its progress, its file) are written with its end.
    `run` is updated in place.
    """
    notes = run_notes(run)
    if ImportRun.scheduled_import.is_cached(run):
        # The credential the run was sent with, hidden here: the import's, read again as the
        # run ends, may be another since (replaced while the run ran: the source quoting the
        # old one, it went into the run log, its e-mail and its webhook).
        used = run.scheduled_import
        error, traceback = without_secrets(used, (error, traceback))
        if counts is not None and counts.row_errors:
            counts.row_errors = without_secrets(used, counts.row_errors, cut_at=ROW_VALUE_CHARS)
    finished = on_a_fresh_connection(
        lambda: _finish_once(
            run.pk, status, counts, error, traceback, notes, task_id=run.celery_task_id
        ),
        f"run outcome not written run={run.pk}",
    )
    _ended(run, finished)
    return run


def _ended(run: ImportRun, finished: ImportRun) -> None:
    """`run` as its end left it."""
    for name in (*FINISH_FIELDS, *RUN_NOTES, "rows_committed_at"):
        setattr(run, name, getattr(finished, name))


def _finish_once(
    run_id: int,
    status: str,
    counts: RunCounts | None,
    error: str,
    traceback: str,
    notes: dict[str, Any],
    *,
    with_rows: bool = False,
    task_id: str = "",
) -> ImportRun | None:
    """One try at ending the run. `with_rows`: inside the transaction that commits its rows
    (finish_with_rows), which it joins without a savepoint; None when the run may not end
    there (asked to stop, or ended already). `task_id`: the task of the attempt that ends it;
    a row under the run's id that is another run's is left alone (is_attempt_of)."""
    # As the attempt's start (claim_run): its duration is measured on one clock.
    now = database_clock.now()
    with transaction.atomic(savepoint=not with_rows):
        durable_commit()
        # The run and its import, locked by one statement (as recover_lost_run locks them).
        with db_connection.cursor() as cursor:
            cursor.execute(_lock_run_and_import_sql(), [run_id])
            row = cursor.fetchone()
        run, imp = rows.instances(row, ImportRun, ScheduledImport) if row else (None, None)
        if run is None or not is_attempt_of(run.celery_task_id, task_id):
            if with_rows:
                # Deleted while it ran (with its import, or alone): its rows roll back.
                return None
            raise ImportRun.DoesNotExist(f"run {run_id} does not exist")
        run.scheduled_import = imp
        if with_rows and (
            run.status in ImportRun.FINAL_STATUSES or run.cancel_requested_at is not None
        ):
            return None
        if run.status in ImportRun.FINAL_STATUSES:
            if error and run.rows_committed_at is not None:
                # What went wrong after a run ended with its rows (its work tables, emptied
                # after that commit) is no part of it: the worker's log says it.
                logger.warning(
                    "run already finished run=%s status=%s; after its end: %s",
                    run.pk, run.status, without_secrets(imp, error),
                )  # fmt: skip
            return run
        if error or traceback:
            error, traceback = _as_stored(without_secrets(imp, (error, traceback)))
        if run.rows_committed_at is not None:
            if error:
                # What went wrong after the rows landed stays visible among the attempts.
                _record_attempt(run, f"after its rows were committed: {error}")
            status, counts, error = committed_status(run), None, ""
        ended_an_attempt = run.status == ImportRun.Status.RUNNING
        for name, value in notes.items():
            setattr(run, name, value)
        run.status = status
        run.finished_at = now
        # A run that never started took no time, as a skipped one (not its time in the queue).
        run.duration_ms = (
            int((now - run.started_at).total_seconds() * 1000) if run.started_at else 0
        )
        if counts is not None:
            for name in COUNT_FIELDS:
                setattr(run, name, getattr(counts, name))
            if counts.row_errors:
                shown = shown_row_errors(imp, counts)
                run.error_details = {**run.error_details, "rows": shown}
        if traceback:
            run.error_details = {**run.error_details, "traceback": traceback}
        if not error and status == ImportRun.Status.FAILED and run.rows_failed:
            error = EVERY_ROW_REFUSED.format(failed=run.rows_failed)
        if error:
            run.error_message = error
            if ended_an_attempt and status != ImportRun.Status.CANCELLED:
                # A cancel is no failed attempt, a queued run made none, and a retrying run's
                # last one is listed already: "attempt 0", or attempt 1 twice, were shown.
                _record_attempt(run, error)
        elif status in GOOD_STATUSES:
            run.error_message = f"{run.rows_failed} rows failed" if run.rows_failed else ""
        ended = {name: getattr(run, name) for name in RUN_END_FIELDS}
        if with_rows:
            run.rows_committed_at = now
            ended["rows_committed_at"] = now
        rows.update(ImportRun, run.pk, ended)
        apply_outcome(imp, run)
        if alerts.on_run_finished(imp, run):
            notifications.queue_alert(imp, run)
        notifications.on_run_finished(imp, run)
        if run.status in GOOD_STATUSES:
            # Whichever path ends the run, after the commit that ends it (the caller's, when
            # its transaction is open), and once: a run already finished returned above.
            transaction.on_commit(lambda: processed_files.move_processed(imp, run), robust=True)
        elif run.status == ImportRun.Status.FAILED and imp.move_processed:
            transaction.on_commit(lambda: processed_files.say_held_back(imp, run), robust=True)
        # Once it is committed: the caller's transaction, for a run ended with its rows.
        transaction.on_commit(lambda: _log_finished(run))
    return run


def _log_finished(run: ImportRun) -> None:
    logger.info(
        "run finished import=%s run=%s status=%s read=%s inserted=%s updated=%s unchanged=%s "
        "deleted=%s failed=%s duration_ms=%s",
        run.scheduled_import_id, run.pk, run.status, run.rows_read, run.rows_inserted,
        run.rows_updated, run.rows_unchanged, run.rows_deleted, run.rows_failed, run.duration_ms,
    )  # fmt: skip


@cache
def _lock_run_and_import_sql() -> str:
    return (
        f"SELECT {rows.columns(ImportRun, 'r')}, {rows.columns(ScheduledImport, 'i')}"
        f" FROM {ImportRun._meta.db_table} r"
        f" JOIN {ScheduledImport._meta.db_table} i ON i.id = r.scheduled_import_id"
        " WHERE r.id = %s FOR UPDATE"
    )


def without_secrets(imp: ScheduledImport, shown: Any, cut_at: int | None = None) -> Any:
    """`shown` (a run's error, its traceback, its row errors) with the import's credential
    hidden in every form it was sent in (schedules.credentials.secrets_of).

    The file and the server's answers are the source's words, and a source may repeat what it
    was sent: a server that writes the request's headers into the file puts the credential in
    the header a missing key column's message lists, or in a bad row's value. The run's
    message and details reach the API, the admin, alert e-mails, the callback and, as the
    task's result, Flower; none of them may show the secret. The records themselves are the
    owner's data as the source gave it and are stored as they are. `cut_at`: texts this long
    may have been cut there (credentials.hide).
    """
    if not imp.credential_secret:
        return shown
    return credentials.hide(credentials.secrets_of(imp.credential_secret), shown, cut_at)


def _as_stored(texts: tuple[str, str]) -> tuple[str, str]:
    """A run's error and traceback as they are stored and shown (schedules.text.stored): the
    source's words in them may hold a NUL, or megabytes."""
    error, traceback = texts
    return text.stored(error or ""), text.stored(traceback or "", TRACEBACK_CHARS)


def run_texts_without(
    secrets: list[str], message: str, details: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """A run's message and details with `secrets` (credentials.secrets_of) hidden where the
    runner hides them as it writes them: the message, each attempt's error, the traceback kept
    for staff and the row errors, whose values may end inside a secret (ROW_VALUE_CHARS).

    For runs written before that hiding (schedules.saved_secrets); the rest of the details
    (who cancelled, why a file stayed in the drop folder) are not the source's words.
    """
    hidden = {**details}
    if isinstance(details.get("attempts"), list):
        hidden["attempts"] = [
            {**entry, "error": credentials.hide(secrets, entry["error"])}
            if isinstance(entry, dict) and isinstance(entry.get("error"), str)
            else entry
            for entry in details["attempts"]
        ]
    if isinstance(details.get("traceback"), str):
        hidden["traceback"] = credentials.hide(secrets, details["traceback"])
    if "rows" in details:
        hidden["rows"] = credentials.hide(secrets, details["rows"], cut_at=ROW_VALUE_CHARS)
    return credentials.hide(secrets, message), hidden


def shown_row_errors(imp: ScheduledImport, counts: RunCounts) -> list[dict[str, Any]]:
    """The row errors a run keeps: the values as the file gave them (cut at ROW_VALUE_CHARS),
    without the import's credential."""
    return without_secrets(imp, counts.row_errors, cut_at=ROW_VALUE_CHARS)


def apply_outcome(imp: ScheduledImport, run: ImportRun) -> None:
    """Update the import's counters for one finished run (caller holds the row lock).

    `succeeded`, `partial` and `failed` (with `timed_out`) are counted apart: a partial run is
    not a success (it rejected rows) nor a failure (its good rows landed), so it neither
    raises the success rate nor extends a failure streak; it does end one.
    """
    outcome = {
        ImportRun.Status.SUCCEEDED: "successful_runs",
        ImportRun.Status.PARTIAL: "partial_runs",
        ImportRun.Status.FAILED: "failed_runs",
        ImportRun.Status.TIMED_OUT: "failed_runs",
    }.get(run.status)
    if outcome is None:
        return
    failed = run.status in FAILED_STATUSES
    succeeded = run.status == ImportRun.Status.SUCCEEDED
    with db_connection.cursor() as cursor:
        cursor.execute(
            _apply_outcome_sql(outcome),
            [failed, run.finished_at, run.status, succeeded, run.finished_at, imp.pk],
        )


@cache
def _apply_outcome_sql(outcome: str) -> str:
    # Written once per outcome: the ORM compiled this UPDATE on every run (rows.py).
    return (
        f"UPDATE {ScheduledImport._meta.db_table} SET total_runs = total_runs + 1,"
        f" {outcome} = {outcome} + 1,"
        " consecutive_failures = CASE WHEN %s THEN consecutive_failures + 1 ELSE 0 END,"
        " last_run_at = %s, last_run_status = %s,"
        " last_success_at = CASE WHEN %s THEN %s ELSE last_success_at END WHERE id = %s"
    )
