"""Field rules of a ScheduledImport, shared by the model's clean(), the API and the admin."""

from __future__ import annotations

import codecs
import functools
import re
import zoneinfo
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from common import addresses, globs

from . import dataset_keys, drop_folders
from .credentials import DEFAULT_PORTS
from .drop_folders import is_file_url
from .text import has_control_characters

if TYPE_CHECKING:
    from .models import ScheduledImport

COLUMN_TYPES = ("text", "int", "decimal", "bool", "date", "datetime")

# (name, low, high) of the five cron fields; croniter accepts more (seconds, years, @hourly,
# 'L', '#'), so the shape is checked here first and croniter does the rest.
CRON_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
_CRON_ATOM = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?$")


def validate_cron_expression(expression: str) -> None:
    """Five fields, each a list of `*`, numbers, names, ranges and steps within that field's
    range, or one of the macros (`@daily`, ...). What passes here is what schedules.ticks
    evaluates, for showing and for firing alike."""
    from .ticks import MACROS, NAMES, expand_macro

    if expression.strip().startswith("@") and expression.strip().lower() not in MACROS:
        raise ValidationError(
            f"unknown macro {expression.strip()!r}; use one of {', '.join(sorted(MACROS))}"
        )
    fields = expand_macro(expression).split()
    if len(fields) != 5:
        raise ValidationError(
            f"a cron expression has 5 fields (minute hour day-of-month month day-of-week) or is "
            f"a macro such as @daily; got {len(fields)} fields"
        )
    for position, (field, (name, low, high)) in enumerate(zip(fields, CRON_FIELDS, strict=True)):
        for atom in field.lower().split(","):
            for alias, number in NAMES.get(position, {}).items():
                atom = atom.replace(alias, str(number))
            if not _CRON_ATOM.match(atom):
                raise ValidationError(f"{name} field {field!r} is not valid")
            step = atom.partition("/")[2]
            if step and int(step) == 0:
                raise ValidationError(f"{name} field {field!r} has a step of 0")
            for number in re.findall(r"\d+", atom.partition("/")[0]):
                if not low <= int(number) <= high:
                    raise ValidationError(
                        f"{name} field {field!r}: {number} is outside {low}-{high}"
                    )
            bounds = atom.partition("/")[0].split("-")
            if len(bounds) == 2 and int(bounds[0]) > int(bounds[1]):
                raise ValidationError(f"{name} field {field!r}: range runs backwards")
    from croniter import CroniterBadDateError, croniter

    from .ticks import Schedule

    schedule = Schedule(cron_expression=expression)
    _refuse_fields_beat_cannot_store(schedule.fields)
    if not croniter.is_valid(schedule.fields):
        raise ValidationError(f"{expression!r} is not a valid cron expression")
    # Well-formed but impossible (`0 0 31 2 *`): no next time, and every surface that shows
    # or schedules the next run would fail on it.
    try:
        croniter(schedule.fields, day_or=schedule.day_or).get_next()
    except CroniterBadDateError as error:
        raise ValidationError(f"{expression!r} never fires: no such date") from error


def refuse_a_star_in_a_list(expression: str) -> None:
    """`0 0 15 * 1,*`: cron ORs the day fields (the weekday's does not start with `*`) and runs
    it daily, as its words said, while the ticks read the list as `*` and fired on the 15th
    alone (scheduler hunt). Refused when a rule is set; one saved before fires as its ticks
    list, and its import stays editable."""
    from .ticks import expand_macro

    for field, (name, _low, _high) in zip(
        expand_macro(expression).split(), CRON_FIELDS, strict=False
    ):
        if "," in field and "*" in field.split(","):
            raise ValidationError(
                f"{name} field {field!r}: * means every value and stands alone, not in a list"
            )


def refuse_a_rule_the_clocks_skip(imp: ScheduledImport) -> None:
    """A rule whose every time its zone's clocks skip never fires (`*/30 2 8-14 3 */7` names
    New York's spring-forward hour alone): accepted, the import's save searched to the year
    9999 and answered 500 (review)."""
    from .ticks import NeverFires, Schedule

    try:
        Schedule(cron_expression=imp.cron_expression, timezone=imp.timezone).next_after(
            datetime.now(UTC)
        )
    except NeverFires:
        raise ValidationError(
            f"{imp.cron_expression!r} never fires in {imp.timezone}: every time it names is "
            "skipped when the clocks go forward"
        ) from None


def _refuse_fields_beat_cannot_store(fields: str) -> None:
    """Each field as it is kept (schedules.ticks.normalize: names as numbers, weekday steps as
    lists) must fit its column of django-celery-beat's CrontabSchedule: a longer one (`1,2,3,...`
    repeated, leading zeros) passed every check and was then a 500 when the import's beat
    entry was saved."""
    from django_celery_beat.models import CrontabSchedule

    columns = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
    for field, column, (name, _low, _high) in zip(
        fields.split(), columns, CRON_FIELDS, strict=True
    ):
        limit = CrontabSchedule._meta.get_field(column).max_length
        if len(field) > limit:
            raise ValidationError(
                f"{name} field is {len(field)} characters long (names written as numbers), and "
                f"the schedule keeps at most {limit}: list each value once, without leading "
                f"zeros, or use a range (1-5) or a step (*/2)"
            )


# Listed by the system's time zone files, but no zone: `localtime` is each host's own (web,
# beat and workers in different containers would each evaluate the schedule in theirs).
NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})


def validate_timezone(name: str) -> None:
    if name in NOT_ZONES or name not in zone_names():
        raise ValidationError(f"{name!r} is not an IANA time zone name (e.g. Europe/Berlin)")


@functools.cache
def zone_names() -> frozenset[str]:
    """The time zones this host knows, read once a process: zoneinfo walks the whole zone
    directory at every call (some 600 files, 10 to 45 ms), which was a quarter of the time of
    creating an import, paid again at every save of one (suite hunt). A zone added by a tzdata
    update is known after a restart, as zoneinfo's own cache of the zones it loaded."""
    return frozenset(zoneinfo.available_timezones())


NOT_A_URL = "this is not a URL: a host in [ ] is an IPv6 address, with both brackets"


def parsable(url: str) -> None:
    """Refuse what urlsplit cannot read (`http://[::1/x`): it raised, a 500 on the form and
    the API."""
    try:
        urlsplit(url)
    except ValueError:
        raise ValidationError(NOT_A_URL) from None


def validate_http_url(url: str) -> None:
    parsable(url)
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValidationError("only http and https URLs are allowed")


CALLBACK_MAY_NOT = "webhooks may not be sent to"


CALLBACK_PASSWORD = (
    "a callback URL holds no password: the URL is shown wherever the import is; the receiver "
    "knows a webhook is importbeat's by its signature (webhook_secret)"
)


def validate_callback_url(url: str) -> None:
    validate_http_url(url)
    if urlsplit(url).password is not None:
        raise ValidationError(CALLBACK_PASSWORD)
    refuse_private_host(url, may_not=CALLBACK_MAY_NOT)


def validate_callback_url_form(url: str) -> None:
    """A callback URL's own form, as Django's URLValidator checks it. A host written as an IPv4
    shorthand (`127.1`, `2130706433`) is no valid URL to it; one that stands for a private
    address is refused naming that address, as a source is, rather than "Enter a valid URL."."""
    parsable(url)
    try:
        URLValidator()(url)
    except ValidationError:
        refuse_private_host(url, may_not=CALLBACK_MAY_NOT)
        raise


def refuse_private_host(url: str, *, may_not: str) -> None:
    """Refuse a URL whose host is written as a loopback, private, link-local or metadata
    address (or is localhost) that ALLOWED_PRIVATE_HOSTS does not exempt on its port.

    Every run, or every webhook, would be refused when it connects (tasks.addresses), and
    nothing at save said so. Names are not looked up (common.addresses.refused_on_sight): the
    check at connect time, after the lookup, stays the defence.
    """
    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return  # a port out of range: the URL's own rule says so, and nothing connects to it
    host = parts.hostname or ""
    try:
        why = addresses.refused_on_sight(host, port)
    except addresses.BadAllowedEntry as error:
        raise ValidationError(f"the server's setting {error}") from None
    if why:
        entry = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ValidationError(
            f"{why}: {may_not} loopback, private, link-local or metadata addresses unless the "
            f"operator lists it in ALLOWED_PRIVATE_HOSTS (as {entry})"
        )


SOURCE_SCHEMES = ("http", "https", "sftp", "file")
URL_PASSWORD = (
    "put the password in the import's credential, not in the URL (a basic credential: "
    '{"kind": "basic", "username": ..., "password": ...}): the URL is shown wherever the '
    "import is, the credential nowhere"
)


def validate_source_url(url: str, owner: Any = None) -> None:
    """http(s) as a web address; sftp as sftp://user@host[:port]/path; file:///path in one of
    the operator's drop folders (a glob in an sftp or file name takes one match: the newest, or
    a drop folder's oldest delivery waiting when its files are filed away)."""
    parsable(url)
    if is_file_url(url):
        try:
            drop_folders.locate(url, drop_folders.folders_of(owner) if owner else None)
        except drop_folders.Refused as refused:
            raise ValidationError(str(refused)) from None
        return
    if has_control_characters(url) or " " in url:
        raise ValidationError("a source URL has no spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in SOURCE_SCHEMES:
        raise ValidationError(f"the source must be one of: {', '.join(SOURCE_SCHEMES)} URLs")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise ValidationError("the URL's port is not valid") from None
    if not parts.hostname:
        raise ValidationError("the URL names no host")
    refuse_private_host(url, may_not="imports may not fetch from")
    if parts.scheme.lower() == "sftp":
        if not parts.username:
            raise ValidationError("an sftp URL names its user: sftp://user@host/path")
        if parts.password is not None:
            raise ValidationError("put the SFTP password in the credential, not in the URL")
        if not parts.path.strip("/") or parts.path.endswith("/"):
            raise ValidationError("an sftp URL names a file: sftp://user@host/path/file.csv")
        if parts.query or parts.fragment or url.endswith(("?", "#")):
            raise ValidationError(
                "an sftp path has no ? or # (write them %3F and %23; a glob is best with *)"
            )
        folders = unquote(parts.path).rpartition("/")[0]
        if any(c in folders for c in "*?["):
            raise ValidationError("a glob may only be in the file name, not in the folders")
    elif parts.scheme.lower() in ("http", "https"):
        if parts.password is not None:
            # A URL is shown wherever the import is (API, admin, run errors, alerts, logs); a
            # credential's secret parts are encrypted and shown nowhere.
            raise ValidationError(URL_PASSWORD)
        URLValidator(schemes=["http", "https"])(url)


def validate_credential(imp: ScheduledImport) -> None:
    """A credential given now fits the source's kind; one saved before still fits the source
    (a credential goes only to the origin it was saved for: a source moved to another origin
    needs it given again)."""
    from .credentials import clean_credential, origin

    new = getattr(imp, "_new_credential", None)
    if new:
        clean_credential(new, imp.source_scheme)
        if not settings.IMPORTBEAT_ENCRYPTION_KEYS:
            raise ValidationError(
                "credentials cannot be saved: no encryption key is configured "
                "(the operator sets IMPORTBEAT_ENCRYPTION_KEY)"
            )
    elif new is None and imp.credential_kind and imp.credential_origin != origin(imp.source_url):
        raise ValidationError(
            f"the credential was saved for {imp.credential_origin}: give it again for the new "
            f"source, or remove it (the API's null, the admin's none)"
        )


def validate_name(name: str) -> None:
    """Names end up in email headers, log lines and terminals: no control characters."""
    if has_control_characters(name or ""):
        raise ValidationError(
            "must not contain control characters (line breaks, tabs, escape sequences)"
        )


# Characters that make a name read otherwise than it is, unseen: bidi overrides, embeddings,
# isolates and marks (`pro\u202eslx.csv` shows as "proxls.csv"), and zero-width ones
# (`ops\u200b` is not `ops`). Names are shown to staff in the admin and the dashboard. The
# zero-width (non-)joiners stay: scripts and emoji need them.
MISLEADING_CHARACTERS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    "\u200b\u2060\u2061\u2062\u2063\u2064\ufeff\u180e"
)


def refuse_misleading_characters(name: str) -> None:
    """Refused when a name is set (attack hunt); one saved before stays editable."""
    found = next((ch for ch in name if ch in MISLEADING_CHARACTERS), None)
    if found is not None:
        raise ValidationError(
            f"must not contain invisible or direction-changing characters (U+{ord(found):04X})"
        )


# A description is shown and kept in the import's history at every edit: one of megabytes made
# each edit a history entry of as many, and a page of the history hundreds.
MAX_DESCRIPTION = 10_000


def validate_description(description: str) -> None:
    if len(description) > MAX_DESCRIPTION:
        raise ValidationError(
            f"a description is at most {MAX_DESCRIPTION:,} characters long"
            f" (this one is {len(description):,})"
        )


# PostgreSQL's limit of columns a table; a run's staging table adds line, problem, key and
# hash, and the merge's reading of it one more (the record's id: tasks.engine.merge). At 1,596
# a file loaded once, and every later run that changed a row failed as a lost connection. A
# file of more columns is refused at its first line (tasks.engine.first_record); a spec of
# more, which no run could take, when it is saved.
MAX_TABLE_COLUMNS = 1600
STAGING_COLUMNS = 5
MAX_FILE_COLUMNS = MAX_TABLE_COLUMNS - STAGING_COLUMNS

MAX_COLUMN_NAME = 200


def validate_columns(columns: object) -> None:
    if not isinstance(columns, list):
        raise ValidationError("must be a list of {name, type, required}")
    if len(columns) > MAX_FILE_COLUMNS:
        # (22,000 were taken in a 2.4 MB body, each edit kept whole in the history: attack hunt)
        raise ValidationError(
            f"lists {len(columns):,} columns; an import takes at most {MAX_FILE_COLUMNS:,} "
            f"(PostgreSQL's limit is {MAX_TABLE_COLUMNS:,} columns a table, and staging uses "
            f"{STAGING_COLUMNS})"
        )
    seen = set()
    for index, column in enumerate(columns):
        if not isinstance(column, dict) or not isinstance(column.get("name"), str):
            raise ValidationError(f"column {index}: must be an object with a 'name'")
        if len(column["name"]) > MAX_COLUMN_NAME:
            # (as the key column's: a name of a megabyte was repeated in every row error, and
            # a run's errors grew to 100 MB)
            raise ValidationError(
                f"column {index}: a name is at most {MAX_COLUMN_NAME} characters long"
            )
        if column.get("type", "text") not in COLUMN_TYPES:
            raise ValidationError(
                f"column {column['name']!r}: type must be one of {', '.join(COLUMN_TYPES)}"
            )
        if not isinstance(column.get("required", False), bool):
            raise ValidationError(f"column {column['name']!r}: required must be true or false")
        unknown = set(column) - {"name", "type", "required"}
        if unknown:
            raise ValidationError(f"column {column['name']!r}: unknown keys {sorted(unknown)}")
        if column["name"] in seen:
            raise ValidationError(f"column {column['name']!r} is listed twice")
        if has_control_characters(column["name"]):
            raise ValidationError(
                f"column {column['name']!r}: a name must not contain control characters"
            )
        seen.add(column["name"])


# Text codecs that no file's text is written in: they turn text into other text (a domain
# name, Python's escapes) or refuse everything. `idna` was accepted, and every run of its import
# crashed as "an unexpected error in importbeat" (its encoder takes no errors="replace").
NOT_FILE_ENCODINGS = frozenset(
    {"idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined"}
)


def validate_encoding(name: str) -> None:
    """A text codec Python knows; `base64`, `rot13`, `hex` are codecs but not text encodings,
    and `idna`, `punycode`, `unicode_escape` not ones a file is written in."""
    try:
        codec = codecs.lookup(name)
    except LookupError:
        raise ValidationError(f"unknown encoding {name!r}") from None
    try:
        "".encode(name)
        b"".decode(name)
    except (LookupError, UnicodeError):
        raise ValidationError(
            f"{name!r} is not a text encoding (e.g. utf-8, latin-1, cp1252)"
        ) from None
    if codec.name in NOT_FILE_ENCODINGS:
        raise ValidationError(
            f"{name!r} is not a text encoding files are written in (e.g. utf-8, latin-1, cp1252)"
        )


# Each schedule type's own field.
SCHEDULE_FIELDS = {"cron_expression": "cron", "interval_seconds": "interval"}


def fields_of_the_other_schedule(schedule_type: str | None, sent: dict[str, Any]) -> dict[str, str]:
    """The fields of `sent` that belong to the schedule type not chosen, with their type.

    The model keeps only its schedule type's field (drop_other_schedule): a cron expression
    sent to an interval import without switching its type was dropped, and the import went on
    as before. An empty value (a cleared field) is what the model keeps anyway.
    """
    return {
        field: its_type
        for field, its_type in SCHEDULE_FIELDS.items()
        if schedule_type not in (None, its_type) and sent.get(field) not in (None, "")
    }


# What decides whether an import's notifications can be delivered (undeliverable_notifications).
NOTIFY_FIELDS = ("notify_on", "notify_channels", "callback_url")


def edit_errors(
    current: ScheduledImport | None, changed: dict[str, Any], defaults: dict[str, Any]
) -> dict[str, list[str]]:
    """The errors of the fields `changed` that read fields the caller did not send: those of
    the import as it is (`current`, locked by the caller; `defaults` for a new one). Checked
    against the import a request first read, two clients' edits at once both passed: a cron
    expression sent as another switched the import to an interval was dropped, and a webhook
    asked for as another removed the callback URL reached no one, each answered 200."""
    errors: dict[str, list[str]] = {}
    kind = changed.get("schedule_type", getattr(current, "schedule_type", None))
    for field, its in fields_of_the_other_schedule(kind, changed).items():
        errors[field] = [
            f"only for schedule_type {its!r}, and this import's is {kind!r}:"
            f' send "schedule_type": "{its}" with it to switch'
        ]
    if changed.keys() & set(NOTIFY_FIELDS):
        effective = {
            name: changed[name]
            if name in changed
            else (defaults[name] if current is None else getattr(current, name))
            for name in NOTIFY_FIELDS
        }
        if nowhere := undeliverable_notifications(**effective):
            errors["notify_channels"] = [nowhere]
    return errors


def undeliverable_notifications(
    notify_on: list[str], notify_channels: list[str], callback_url: str
) -> str:
    """Why the notifications asked for could reach no one ('' when they can).

    A webhook goes only to the import's callback URL: `notify_channels: ["webhook"]` without
    one made no delivery at all, and nothing said so.
    """
    if (
        not notify_on
        or "email" in notify_channels
        or ("webhook" in notify_channels and callback_url)
    ):
        return ""
    if "webhook" in notify_channels:
        return (
            "a webhook is sent to the import's callback_url, and it has none: set one, or add email"
        )
    return f"{', '.join(notify_on)} would notify on no channel: choose email or webhook"


NO_DELIMITERS = ('"', "\n", "\r", "\x00")


def validate_import_fields(imp: ScheduledImport) -> None:
    """Collect every broken rule of `imp`, keyed by field, into one ValidationError."""
    errors: dict[str, list[str]] = {}

    def check(field: str, rule, *args) -> None:
        try:
            rule(*args)
        except ValidationError as error:
            errors.setdefault(field, []).extend(error.messages)

    check("name", validate_name, imp.name or "")
    shown_unchanged = imp.unchanged_fields(("name", "description"))
    if "name" not in shown_unchanged:
        check("name", refuse_misleading_characters, imp.name or "")
    if "description" not in shown_unchanged:
        check("description", validate_description, imp.description or "")
    check("key_column", validate_name, imp.key_column or "")
    if imp.dataset_id is not None:
        check("dataset", validate_name, imp.dataset.name)
    unchanged = imp.policy_fields_unchanged()
    # (a drop folder's path is its owner's: an import moved to another owner is checked again)
    if "source_url" not in unchanged or not imp.unchanged_fields(("owner_id",)):
        owner = imp.owner if imp.owner_id else None
        check("source_url", validate_source_url, imp.source_url or "", owner)
    check("source_member", validate_name, imp.source_member or "")
    if imp.move_processed and not is_file_url(imp.source_url or ""):
        errors.setdefault("move_processed", []).append(
            "only a drop folder's file (file:///) can be moved to processed/"
        )
    elif "source_url" not in errors:
        check("source_url", validate_one_queue_per_source, imp)
    if "source_url" not in errors:
        check("credential", validate_credential, imp)
    if imp.callback_url and "callback_url" not in unchanged:
        check("callback_url", validate_callback_url, imp.callback_url)
    check("timezone", validate_timezone, imp.timezone or "")
    check("columns", validate_columns, imp.columns)
    if not (imp.key_column or "").strip():
        errors.setdefault("key_column", []).append("a key column is required")
    elif imp.dataset_id is not None and imp.key_fields_changed():
        check("key_column", validate_dataset_key, imp)
        check("mode", validate_dataset_writers, imp)
    if len(imp.delimiter or "") != 1:
        errors.setdefault("delimiter", []).append("the delimiter is one character")
    elif imp.delimiter in NO_DELIMITERS:
        # Saved, every run failed as "the key column 'sku' is not in the file's columns
        # (sku,name,price)": the quote and the line breaks are CSV's own.
        errors.setdefault("delimiter", []).append(
            "the delimiter cannot be the quote character or a line break: CSV uses them itself"
        )
    check("encoding", validate_encoding, imp.encoding or "")
    if imp.schedule_type == "cron":
        if not imp.cron_expression:
            errors.setdefault("cron_expression", []).append("required for a cron schedule")
        else:
            check("cron_expression", validate_cron_expression, imp.cron_expression)
            if "cron_expression" not in unchanged:
                check("cron_expression", refuse_a_star_in_a_list, imp.cron_expression)
            if not {"cron_expression", "timezone"} & set(errors):
                check("cron_expression", refuse_a_rule_the_clocks_skip, imp)
    elif imp.schedule_type == "interval":
        if imp.interval_seconds is None:
            errors.setdefault("interval_seconds", []).append("required for an interval schedule")
        elif (
            imp.interval_seconds < settings.MIN_INTERVAL_SECONDS
            and "interval_seconds" not in unchanged
        ):
            errors.setdefault("interval_seconds", []).append(
                f"must be at least {settings.MIN_INTERVAL_SECONDS} seconds"
            )
    else:
        errors.setdefault("schedule_type", []).append("must be 'cron' or 'interval'")
    if not 1 <= (imp.timeout_seconds or 0) <= settings.MAX_TIMEOUT_SECONDS:
        errors.setdefault("timeout_seconds", []).append(
            f"must be between 1 and {settings.MAX_TIMEOUT_SECONDS} seconds"
        )
    if imp.retry_backoff_max_seconds < imp.retry_backoff_seconds:
        errors.setdefault("retry_backoff_max_seconds", []).append(
            "must not be smaller than retry_backoff_seconds"
        )
    check("notify_on", validate_choices, imp.notify_on, NOTIFY_EVENTS)
    check("notify_channels", validate_choices, imp.notify_channels, NOTIFY_CHANNELS)
    if errors:
        raise ValidationError(errors)


def validate_dataset_key(imp: ScheduledImport) -> None:
    """The import's key column is the one its dataset's records are keyed by, unless the
    dataset holds none or the import replaces them (schedules.dataset_keys)."""
    keyed_by, records = imp.dataset.keyed_now()
    if dataset_keys.conflicts(keyed_by, records, imp.key_column, imp.mode):
        raise ValidationError(
            dataset_keys.conflict(imp.dataset.name, keyed_by, records, imp.key_column)
        )


def validate_dataset_writers(imp: ScheduledImport) -> None:
    """A sync import is its dataset's one writer (schedules.dataset_keys.shared_with_sync).

    In a save's transaction, the saves of one dataset's writers take turns from here to their
    commit (an advisory lock, which a merge's lock of the dataset row leaves alone): a sync and
    an upsert import saved at the same moment each found the other absent, and both were
    saved."""
    from django.db import connection

    if connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)",
                [WRITERS_LOCK, imp.dataset_id % 2**31],
            )
    others = list(
        type(imp)
        .objects.filter(dataset_id=imp.dataset_id)
        .exclude(pk=imp.pk)
        .order_by("pk")
        .values_list("name", "mode")
    )
    if words := dataset_keys.shared_with_sync(imp.dataset.name, imp.mode, others):
        raise ValidationError(words)


# The advisory lock class of a dataset's writers' saves (validate_dataset_writers).
WRITERS_LOCK = 0x1B0B


def validate_one_queue_per_source(imp: ScheduledImport) -> None:
    """A queue of deliveries (a drop folder's glob, or file, with move_processed) is the only
    one on the files its glob matches in that folder (`products_*.csv` and `*.csv` share
    `products_1.csv`), whoever's it is.

    Each run of a queue takes the oldest delivery waiting and files it away (tasks.drop_folder,
    schedules.processed_files): two such imports of one glob each took the deliveries the other
    had not taken yet, and each dataset got about half of the files, with no word of it. An
    import without move_processed takes the newest file and leaves it there, so it shares a
    glob with anything. Another user's queue counts wherever both may read the folder (a shared
    installation, or a staff user's import: drop_folders.folders_of); it is named only to its
    owner and to staff. Checked when the import is new or its source, its move_processed or its
    owner changes: two imports saved so before this rule stay editable.
    """
    if not (imp.move_processed and imp.owner_id and is_file_url(imp.source_url or "")):
        return
    model = type(imp)
    if imp.pk is not None:
        saved = model.objects.filter(pk=imp.pk).values_list(
            "source_url", "move_processed", "owner_id"
        )
        if saved.first() == (imp.source_url, imp.move_processed, imp.owner_id):
            return
    owner = imp.owner
    try:
        mine = drop_folders.locate(imp.source_url, drop_folders.folders_of(owner))
    except drop_folders.Refused:
        return  # (validate_source_url says so)
    from django.db import connection

    if connection.in_atomic_block:
        # The folder's queue saves take turns to their commit: two saved at the same moment
        # would each find the other absent.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [QUEUES_LOCK, mine.folder]
            )
    for other in _queues_beside(imp, owner):
        try:
            theirs = drop_folders.locate(other.source_url, drop_folders.folders_of(other.owner))
        except drop_folders.Refused:
            continue  # (it reads nothing: its runs say why)
        if theirs.folder != mine.folder:
            continue
        if other.owner_id == owner.pk:
            whose = f"your import {other.name!r} (id {other.pk})"
        elif owner.is_staff:
            whose = f"{other.owner.get_username()}'s import {other.name!r} (id {other.pk})"
        else:
            whose = "another user's import"
        try:
            shared = theirs.name if theirs == mine else globs.a_name_of_both(mine.name, theirs.name)
        except globs.TooComplex:
            raise ValidationError(
                f"{mine.name} and the pattern of {whose} ({theirs.path}) are too long to tell "
                "whether a delivery matches both: shorten this pattern (fewer [...] sets and *)"
            ) from None
        if shared is None:
            continue
        resumed = "" if other.status == model.Status.ACTIVE else f" ({other.status}: once resumed)"
        if theirs == mine:
            which = f"already takes the deliveries of {mine.path}"
        else:
            which = (
                f"takes the deliveries of {theirs.path}, and a delivery such as {shared!r} "
                f"matches {mine.name} too"
            )
        raise ValidationError(
            f"{whose} {which} and files them away (move_processed){resumed}: two imports of "
            "one queue each take the files the other has not taken yet, and each would import "
            "about half of them. Import them with one of the two, or have the files delivered "
            "to a folder (or under a name) of each import's own"
        )


def _queues_beside(imp: ScheduledImport, owner: Any) -> Any:
    """The other queues of deliveries that may read a folder `owner`'s `imp` reads: its
    owner's; everyone's on a shared installation or for staff; else staff users' too."""
    queues = (
        type(imp)
        .objects.filter(move_processed=True, source_url__istartswith="file:")
        .exclude(pk=imp.pk)
        .select_related("owner")
        .only("pk", "name", "source_url", "status", "owner__username", "owner__is_staff")
        .order_by("pk")
    )
    if settings.IMPORT_DROP_DIRS_SHARED or owner.is_staff:
        return queues
    from django.db.models import Q

    return queues.filter(Q(owner_id=owner.pk) | Q(owner__is_staff=True))


# The advisory lock class of a drop folder's queue saves (validate_one_queue_per_source).
QUEUES_LOCK = 0x1B0C

NOTIFY_EVENTS = ("failed", "partial", "succeeded", "recovered", "late")
NOTIFY_CHANNELS = ("email", "webhook")


def validate_choices(values: object, choices: tuple[str, ...]) -> None:
    """A list of distinct names out of `choices` (notification events and channels)."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValidationError(f"a list of names out of: {', '.join(choices)}")
    unknown = [v for v in values if v not in choices]
    if unknown:
        raise ValidationError(f"{', '.join(unknown)}: use names out of: {', '.join(choices)}")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValidationError(f"{', '.join(repeated)}: each name once")
