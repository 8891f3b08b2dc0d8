"""Runs saved before their texts were hidden: the same hiding, passed over them afterwards.

The runner hides an import's credential wherever the source repeated it in what it writes of a
run (services.without_secrets). Runs written before it did keep the secret in their message,
attempts, traceback or row errors. Migration 0021 passes the runs of every import with a
credential through that same hiding once, when the encryption keys are configured at that time
(without them no credential can be read); `manage.py hide_run_secrets` does the same for
operators who migrated without the keys, and as often as asked: hiding twice changes nothing.

The secret hidden is the import's credential as it is now. One its owner replaced or removed
is known at that change only: schedules.replaced_credentials keeps it then and passes the
import's runs through this same hiding with it (`token`).

Also here: the Celery results the result backend still keeps of those runs' tasks (a failed
run's error, a retry's, with their tracebacks), which the command hides as well.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import redis
from celery import current_app
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from . import credentials, services

# Runs read (and locked for their update) at a time: memory and locks stay the same whatever
# the number of runs.
BATCH_SIZE = 1000
NO_KEY = (
    "no encryption key is configured (IMPORTBEAT_ENCRYPTION_KEY), so the credentials cannot be "
    "read and no run was looked at: set it as the workers have it, then run "
    "`python manage.py hide_run_secrets`"
)


@dataclass
class Tally:
    looked_at: int = 0
    changed: int = 0
    # Imports whose credential no configured key opens: their runs are left as they are.
    unreadable: set[int] = field(default_factory=set)

    def said(self, what: str) -> str:
        line = (
            f"{what} of imports with a credential: {self.looked_at} looked at, "
            f"{self.changed} changed (a secret hidden)"
        )
        if self.unreadable:
            ids = ", ".join(str(pk) for pk in sorted(self.unreadable)[:20])
            more = ", …" if len(self.unreadable) > 20 else ""
            line += (
                f"; left as they were: those of {len(self.unreadable)} import(s) whose "
                f"credential no configured key opens (import {ids}{more})"
            )
        return line

    def readable(self, batch: list[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        """(run id, the secrets to hide, *the rest) of each row of `batch` (_batches), counted
        as looked at; a row whose credential no configured key opens is counted there instead.
        Each import's credential is decrypted once a batch."""
        secrets: dict[int, list[str] | None] = {}
        for pk, import_id, token, *rest in batch:
            self.looked_at += 1
            if import_id not in secrets:
                secrets[import_id] = secrets_if_readable(token)
            if secrets[import_id] is None:
                self.unreadable.add(import_id)
                continue
            yield pk, secrets[import_id], *rest


def hide_in_runs(
    run_model: type[models.Model],
    batch_size: int = BATCH_SIZE,
    *,
    runs: models.QuerySet | None = None,
    token: str | None = None,
    after: int = 0,
    done: Callable[[int], None] | None = None,
) -> Tally:
    """Hide each import's credential in the texts of its runs (services.run_texts_without).

    `run_model` is ImportRun, or its historical model in a migration. Only runs with a text, of
    imports with a credential, are read, by id in batches of `batch_size`; only a run whose
    text changes is written, and only if no one wrote it since it was read.

    With `token`, the credential it holds is hidden instead of each import's own, in `runs`
    (a credential replaced, schedules.replaced_credentials), from the id after `after` on;
    `done` is told the last id of each batch once that batch is written.
    """
    tally = Tally()
    runs = (run_model.objects if runs is None else runs).exclude(error_message="", error_details={})
    for batch in _batches(runs, ("error_message", "error_details"), batch_size, token, after):
        with transaction.atomic():
            for pk, secrets, message, details in tally.readable(batch):
                shown, shown_details = services.run_texts_without(secrets, message, details)
                if (shown, shown_details) == (message, details):
                    continue
                tally.changed += run_model.objects.filter(
                    pk=pk, error_message=message, error_details=details
                ).update(error_message=shown, error_details=shown_details)
        if done is not None:
            done(batch[-1][0])
    return tally


def hide_in_results(
    run_model: type[models.Model],
    batch_size: int = BATCH_SIZE,
    *,
    runs: models.QuerySet | None = None,
    token: str | None = None,
) -> Tally | None:
    """Hide each import's credential in the Celery results still kept of its runs' tasks.

    The result backend keeps a task's last state for CELERY_RESULT_EXPIRES (a day): a failed
    run's error and a retry's, each with its traceback, which Flower's API and redis-cli show.
    Only the runs that ended within that time (or have not) can still have one. None when the
    result backend is not Redis. `runs` and `token` as for hide_in_runs.
    """
    backend = current_app.backend
    client = getattr(backend, "client", None)
    if not isinstance(client, redis.Redis):
        return None
    tally = Tally()
    since = timezone.now() - timedelta(seconds=settings.CELERY_RESULT_EXPIRES)
    runs = (
        (run_model.objects if runs is None else runs)
        .exclude(celery_task_id="")
        .filter(Q(finished_at__isnull=True) | Q(finished_at__gte=since))
    )
    for batch in _batches(runs, ("celery_task_id",), batch_size, token):
        keys = {row[0]: backend.get_key_for_task(row[-1]) for row in batch}
        kept = dict(zip(keys, client.mget(list(keys.values())), strict=True))
        for pk, secrets, _task_id in tally.readable([row for row in batch if kept[row[0]]]):
            meta = backend.decode(kept[pk])
            shown = _result_without(secrets, meta)
            if shown != meta:
                tally.changed += _replace(client, keys[pk], kept[pk], backend.encode(shown))
    return tally


def _batches(
    runs: models.QuerySet,
    columns: tuple[str, ...],
    batch_size: int,
    token: str | None = None,
    after: int = 0,
) -> Iterator[list[tuple[Any, ...]]]:
    """(run id, import id, its credential, *columns) of the runs of imports with a credential,
    by id, `batch_size` at a time: each batch a query of its own, from the last id on. With
    `token`, of all `runs`, each with that credential instead of its import's."""
    if token is None:
        runs = runs.exclude(scheduled_import__credential_secret="")
        values = ("pk", "scheduled_import_id", "scheduled_import__credential_secret", *columns)
    else:
        values = ("pk", "scheduled_import_id", *columns)
    runs = runs.order_by("pk")
    last = after
    while batch := list(runs.filter(pk__gt=last).values_list(*values)[:batch_size]):
        last = batch[-1][0]
        yield batch if token is None else [(pk, imp, token, *rest) for pk, imp, *rest in batch]


def secrets_if_readable(token: str) -> list[str] | None:
    """What to hide of the credential `token` holds; None when no configured key opens it
    (secrets_of would then hide the ciphertext alone, and say nothing)."""
    try:
        credentials.decrypt(token)
    except ImproperlyConfigured:
        return None
    return credentials.secrets_of(token)


def _result_without(secrets: list[str], meta: dict[str, Any]) -> dict[str, Any]:
    """A stored task state with `secrets` hidden in its texts: the traceback, an exception's
    arguments (a failure's, a retry's) and a run's summary's error (tasks.runner.summary)."""
    shown = {**meta}
    if isinstance(meta.get("traceback"), str):
        shown["traceback"] = credentials.hide(secrets, meta["traceback"])
    result = meta.get("result")
    if isinstance(result, dict):
        shown["result"] = {
            name: credentials.hide(secrets, value) if name in ("exc_message", "error") else value
            for name, value in result.items()
        }
    return shown


def _replace(client: redis.Redis, key: bytes, stored: bytes, shown: bytes) -> int:
    """Write `shown` over `stored` with the time it has left, unless the task stored another
    state meanwhile (written by a worker that hides it, and newer): 1 when written."""
    with client.pipeline() as pipe:
        try:
            pipe.watch(key)
            if pipe.get(key) != stored:
                return 0
            pipe.multi()
            pipe.set(key, shown, keepttl=True)
            pipe.execute()
        except redis.WatchError:
            return 0
    return 1
