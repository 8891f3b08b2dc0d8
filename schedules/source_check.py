"""The admin's Test source, asked of a worker: it fetches from where the imports fetch, with the
same rules (tasks.source_check), and schedules never imports tasks (STYLE rule 15)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from celery import current_app
from celery.exceptions import TimeoutError as CeleryTimeout
from django.conf import settings
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from common import error_words

from . import after_commit, check_slots, unsaved_checks
from .models import ScheduledImport

logger = logging.getLogger(__name__)

# How long the page waits for a worker's answer, and how long the worker's check may wait for
# the source: settings (SOURCE_CHECK_WAIT_SECONDS, 20, below gunicorn's 30 s worker timeout;
# SOURCE_CHECK_FETCH_SECONDS, 12, well inside the page's wait), read at each check. A source that
# took the connection and never answered was waited for up to FETCH_READ_TIMEOUT_SECONDS (60 s),
# and the page said "no worker answered within 20 s" while a worker was there, its slot held
# 25 s (the task's soft time limit). Now the worker answers "the source did not answer within
# 12 s" and the page has it.
# The check task's time limits come this long after the fetch's deadline, per message: past the
# soft one (a DNS lookup or a connect stuck where the fetch's own deadline cannot end it) the
# check answers in the same words; the hard one frees the worker slot whatever the task is stuck
# in, before the page gives up (project/settings.py keeps the page's wait past it).
SOFT_LIMIT_AFTER_FETCH_SECONDS = 3
HARD_LIMIT_AFTER_FETCH_SECONDS = 5


def wait_seconds() -> int:
    """How long the page (the API, the admin's Test source) waits for a worker's answer."""
    return settings.SOURCE_CHECK_WAIT_SECONDS


def fetch_seconds() -> int:
    """How long a worker's check waits for its source (tasks.source_check.Deadline)."""
    return settings.SOURCE_CHECK_FETCH_SECONDS


def time_limits() -> tuple[int, int]:
    """The check task's soft and hard time limits."""
    fetch = fetch_seconds()
    return fetch + SOFT_LIMIT_AFTER_FETCH_SECONDS, fetch + HARD_LIMIT_AFTER_FETCH_SECONDS


def out_of_time() -> str:
    """What a check whose source did not answer in time says."""
    return (
        f"the source did not answer within {fetch_seconds()} s, the longest a check waits for "
        "it (a run waits longer)"
    )


# What a check reads of an import, saved or not: what the API sends for one not saved yet, and
# all the worker builds it from (tasks.source_check).
CHECK_FIELDS = (
    "source_url", "source_member", "delimiter", "encoding", "has_header", "key_column", "columns",
    # A glob whose files are filed away shows the oldest delivery waiting, as a run takes it.
    "move_processed",
    # A drop folder's file is read from its owner's own folder (schedules.drop_folders).
    "owner_id",
    # An import being edited brings its saved credential and the host key it pins.
    "credential_kind", "credential_origin", "credential_secret", "sftp_host_key",
)  # fmt: skip
SHOWN_COLUMNS = 15
QUEUE_UNAVAILABLE = "the task queue is unavailable; try again"
# A full Redis: said as a trigger says it (error_words.QUEUE_FULL).
QUEUE_FULL = f"{error_words.QUEUE_FULL} and takes no new check; try again"
WORKER_FAILED = "the check stopped on an unexpected error on the worker; the details are logged"


@dataclass
class SourceCheck:
    ok: bool
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    bytes_total: int | None = None
    key_column_found: bool = False
    missing_required_columns: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    suggestions: dict[str, str] = field(default_factory=dict)
    # SFTP: the server's host key the check met (pinned by a saved import's first check).
    host_key_fingerprint: str = ""
    # The file a run would take (a glob's match: tasks.drop_folder); "" for HTTP.
    source_file: str = ""

    def summary(self) -> str:
        """One line for the admin's message."""
        if not self.ok:
            return "Test source: " + "; ".join(self.problems)
        shown = ", ".join(self.columns[:SHOWN_COLUMNS])
        if len(self.columns) > SHOWN_COLUMNS:
            shown += f", … ({len(self.columns)} in all)"
        size = f" ({self.bytes_total:,} bytes)" if self.bytes_total is not None else ""
        first = f"; first row: {', '.join(self.rows[0])}" if self.rows else "; no rows yet"
        return f"Test source: the file answers{size} with columns {shown}{first}."


def check_source(
    imp: ScheduledImport, wait: float | None = None, *, by: int | None = None
) -> SourceCheck:
    """A saved import's source (the admin's Test source), checked for the user `by`. Without a
    slot free (schedules.check_slots), the answer says so and nothing is asked of a worker.
    `wait`: SOURCE_CHECK_WAIT_SECONDS unless given."""
    wait = wait_seconds() if wait is None else wait
    try:
        with check_slots.held(by, wait):
            return _ask("importbeat.check_source", [imp.pk], wait)
    except check_slots.Busy as busy:
        return SourceCheck(ok=False, problems=[str(busy)])


def check_unsaved(
    imp: ScheduledImport, wait: float | None = None, *, by: int | None = None
) -> SourceCheck:
    """An import's source before it is saved (`POST /imports/check`, `?dry_run=true`), checked
    for the user `by`. The task is given a key to the fields, not the fields: they hold the
    credential (schedules.unsaved_checks).

    Raises check_slots.Busy at once, nothing asked of a worker, without a slot free: the API
    answers it 429 with Retry-After. `wait`: SOURCE_CHECK_WAIT_SECONDS unless given."""
    wait = wait_seconds() if wait is None else wait
    with check_slots.held(by, wait):
        try:
            key = unsaved_checks.put(unsaved_fields(imp), wait)
        except (RedisError, OSError) as error:
            return SourceCheck(ok=False, problems=[_queue_problem(error)])
        return _ask("importbeat.check_source_fields", [key], wait)


def _queue_problem(error: BaseException) -> str:
    """What the person checking a source is told of a broker or Redis that did not take the
    check: full (as a trigger says it), else unavailable. The error goes to the log."""
    logger.warning("source check not asked: %s", after_commit.why_for_the_log(error))
    return QUEUE_FULL if error_words.refusal(error) == error_words.FULL else QUEUE_UNAVAILABLE


def unsaved_fields(imp: ScheduledImport) -> dict[str, Any]:
    """What the worker is given of an import not saved (or an unsaved change of a saved one)."""
    return {name: getattr(imp, name) for name in CHECK_FIELDS}


def _ask(task: str, args: list[Any], wait: float) -> SourceCheck:
    soft_limit, hard_limit = time_limits()
    try:
        result = current_app.send_task(
            task, args=args, soft_time_limit=soft_limit, time_limit=hard_limit
        )
    except (OperationalError, RedisError) as error:
        return SourceCheck(ok=False, problems=[_queue_problem(error)])
    try:
        answer = result.get(timeout=wait, propagate=False)
        if not result.successful():
            # The error's class is for the operators (here and in the worker's log), not for
            # the person checking a source.
            logger.warning("source check failed on the worker task=%s error=%s: %s",
                           task, type(answer).__name__, answer)  # fmt: skip
            return SourceCheck(ok=False, problems=[WORKER_FAILED])
        return SourceCheck(**answer)
    except CeleryTimeout:
        return SourceCheck(
            ok=False, problems=[f"no worker answered within {wait:g} s; is a worker running?"]
        )
    finally:
        result.forget()
