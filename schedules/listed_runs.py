"""One page of a run list, read in one statement written once.

`GET /runs/` and `GET /imports/{id}/runs/` choose their page with the ORM (the owner's scope,
the filters, the order, the pagination: a query of ids alone) and read the page's runs here,
each with its import's name and its trigger's username. The ORM compiled a select of the shown
columns with two joins for every page and made a model instance of every run, import and user
through its own machinery: three fifths of the list's CPU at 10,000 runs (issue 15,
tests/bench/bench_reads.py). The instances are made as `.only()` made them (`rows.instance`),
the same fields loaded and the same deferred, so the serializer reads what it read before
(tests/test_api_run_lists_choose_their_page_by_ids.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from django.contrib.auth import get_user_model
from django.db import connection

from . import rows
from .models import ImportRun, ScheduledImport

# The relations a run list shows something of: joined, the import always, the user when set.
_IMPORT, _TRIGGERER = "scheduled_import", "triggered_by"


def page(ids: Sequence[int], shown: tuple[str, ...]) -> list[ImportRun]:
    """The runs `ids`, in that order, as
    `ImportRun.objects.select_related("scheduled_import", "triggered_by").only(*shown)` loads
    them: `shown` names the run's fields and its import's and trigger's (`scheduled_import__name`,
    `triggered_by__username`), everything else of each is deferred.

    Ids of runs deleted since they were chosen (retention, their import deleted) are left out,
    as a list read a moment later would leave them out.
    """
    if not ids:
        return []
    own, of_import, of_user = _fields_shown(shown)
    user_model = get_user_model()
    import_starts = rows.width(ImportRun, own)
    user_starts = import_starts + rows.width(ScheduledImport, of_import)
    import_field, user_field = ImportRun.scheduled_import.field, ImportRun.triggered_by.field
    found: dict[int, ImportRun] = {}
    with connection.cursor() as cursor:
        cursor.execute(_runs_sql(shown), [list(ids)])
        for row in cursor.fetchall():
            run = rows.instance(row[:import_starts], ImportRun, own)
            imp = rows.instance(row[import_starts:user_starts], ScheduledImport, of_import)
            import_field.set_cached_value(run, imp)
            # A scheduled run has no trigger: the outer join's columns are all null.
            user = None
            if run.triggered_by_id is not None:
                user = rows.instance(row[user_starts:], user_model, of_user)
            user_field.set_cached_value(run, user)
            found[run.pk] = run
    return [found[pk] for pk in ids if pk in found]


@cache
def _fields_shown(shown: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """The run's own fields in `shown` (a relation by its key), its import's and its user's."""
    own: list[str] = []
    related: dict[str, list[str]] = {_IMPORT: [], _TRIGGERER: []}
    for path in shown:
        head, _, rest = path.partition("__")
        own.append(head)
        if rest:
            if head not in related or "__" in rest:
                raise ValueError(f"a run list reads its import's and trigger's fields: {path!r}")
            related[head].append(rest)
    # The run's keys to both, even when nothing else of the relation is shown: the joins need them.
    own += [ImportRun._meta.get_field(name).attname for name in related]
    return tuple(own), tuple(related[_IMPORT]), tuple(related[_TRIGGERER])


@cache
def _runs_sql(shown: tuple[str, ...]) -> str:
    quote = connection.ops.quote_name
    own, of_import, of_user = _fields_shown(shown)
    user_model = get_user_model()
    return (
        f"SELECT {rows.columns(ImportRun, 'r', own)},"
        f" {rows.columns(ScheduledImport, 'i', of_import)},"
        f" {rows.columns(user_model, 'u', of_user)}"
        f" FROM {quote(ImportRun._meta.db_table)} r"
        f" JOIN {quote(ScheduledImport._meta.db_table)} i"
        f" ON i.id = r.{rows.column(ImportRun, _IMPORT)}"
        f" LEFT JOIN {quote(user_model._meta.db_table)} u"
        f" ON u.id = r.{rows.column(ImportRun, _TRIGGERER)}"
        " WHERE r.id = ANY(%s)"
    )
