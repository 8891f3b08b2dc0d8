"""One page of an imports list, read in two statements written once.

`GET /imports/` chooses its page with the ORM (the owner's scope, the filters, the order,
the pagination: a query of ids alone) and reads the page's imports here: every column of each,
their owner's and their dataset's names, and their runs in progress. The ORM compiled a
fifty-column select with two joins and a prefetch of the active runs for every page, more than
a third of the request's CPU at 10,000 imports (issue 15, tests/bench/bench_reads.py); the
instances are the ORM's own (`rows.instances`), so the serializer reads what it read before.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from django.contrib.auth import get_user_model
from django.db import connection

from . import rows
from .models import ACTIVE_RUN_ORDER_SQL, Dataset, ImportRun, ScheduledImport


def page(ids: Sequence[int]) -> list[ScheduledImport]:
    """The imports `ids`, in that order, each with `owner` (its username alone), `dataset` (its
    name alone) and `active_runs` (queued, running or retrying; the one holding the import
    first: active_run_order) in place.

    Ids of imports deleted since they were chosen are left out, as a list read a moment later
    would leave them out.
    """
    if not ids:
        return []
    user_model = get_user_model()
    owner_field, dataset_field = ScheduledImport.owner.field, ScheduledImport.dataset.field
    username_only = (user_model.USERNAME_FIELD,)
    found: dict[int, ScheduledImport] = {}
    with connection.cursor() as cursor:
        cursor.execute(_imports_sql(), [list(ids)])
        for row in cursor.fetchall():
            *columns, username, name = row
            imp = rows.instances(columns, ScheduledImport)[0]
            # The owner and the dataset as `.only()` would load them: their names alone.
            owner = rows.instance([imp.owner_id, username], user_model, username_only)
            dataset = rows.instance([imp.dataset_id, name], Dataset, ("name",))
            owner_field.set_cached_value(imp, owner)
            dataset_field.set_cached_value(imp, dataset)
            imp.active_runs = []
            found[imp.pk] = imp
        cursor.execute(_active_runs_sql(), [list(found)])
        for row in cursor.fetchall():
            run = rows.instances(row, ImportRun)[0]
            found[run.scheduled_import_id].active_runs.append(run)
    return [found[pk] for pk in ids if pk in found]


@cache
def _imports_sql() -> str:
    quote = connection.ops.quote_name
    user_model = get_user_model()
    username = rows.column(user_model, user_model.USERNAME_FIELD)
    return (
        f"SELECT {rows.columns(ScheduledImport, 'i')}, u.{username}, d.{quote('name')}"
        f" FROM {quote(ScheduledImport._meta.db_table)} i"
        f" JOIN {quote(user_model._meta.db_table)} u ON u.id = i.{quote('owner_id')}"
        f" JOIN {quote(Dataset._meta.db_table)} d ON d.id = i.{quote('dataset_id')}"
        " WHERE i.id = ANY(%s)"
    )


@cache
def _active_runs_sql() -> str:
    quote = connection.ops.quote_name
    active = rows.literals(ImportRun.ACTIVE_STATUSES)
    # The partial index run_active_idx serves it: the runs in progress, whatever the history.
    return (
        f"SELECT {rows.columns(ImportRun, 'r')} FROM {quote(ImportRun._meta.db_table)} r"
        f" WHERE r.{quote('scheduled_import_id')} = ANY(%s) AND r.status IN ({active})"
        f" ORDER BY {ACTIVE_RUN_ORDER_SQL.format(alias='r')}"
    )
