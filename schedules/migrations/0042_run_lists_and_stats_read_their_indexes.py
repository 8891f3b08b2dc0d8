"""Run lists and an import's stats read their indexes alone (lists4 hunt, issue 15 target 2):

- run_history_idx carries the id (the list's order ends with it) and the columns an import's
  stats read: `GET /imports/{id}/stats/?days=366` of 500,000 runs read them from the table
  twice, 1.1-1.35 s;
- run_queued_at_idx carries the id: the admin's deep run-list pages take their ids from it;
- run_status_list_idx and run_trigger_list_idx: `GET /runs/?status=` or `?trigger=` that
  matched none of a user's runs walked every run of the year (0.2-1 s);
- run_duration_rank_idx: an import's p95 duration reads its slowest twentieth of runs from
  the top, not every run sorted (0.5-0.8 s at 500,000 runs).

Built concurrently, as 0018's: the runs table of a busy deployment holds millions of rows and a
plain CREATE INDEX would block every run's writes while it builds. A new index is dropped (IF
EXISTS) first if a failed concurrent build left it INVALID, so that `migrate` can simply be run
again.

A changed index is built beside the old one under a temporary name, then the old one dropped and
the new one renamed (BuildThenSwapIndex), both ways: dropped first, as this migration first did,
an import's run history had only the foreign key's index (a busy import's stats of 30 days
took 3 s instead of 0.2 at a million runs), and the dashboard's chart and the retention no
index on queued_at, for as long as each build took: 5-10 s there, growing with the table (reviewD;
tests/bench/bench_migration_0042_at_a_million_runs.py).
"""

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.migrations.operations.base import Operation

HISTORY_COLUMNS = [
    "status",
    "duration_ms",
    "rows_read",
    "rows_inserted",
    "rows_updated",
    "rows_unchanged",
    "rows_deleted",
    "rows_failed",
]


def _add_concurrently(index: models.Index) -> list[Operation]:
    """`index` on the runs, built concurrently after dropping what a failed build left of it."""
    return [
        migrations.RunSQL(
            f'DROP INDEX CONCURRENTLY IF EXISTS "{index.name}"', reverse_sql=migrations.RunSQL.noop
        ),
        AddIndexConcurrently(model_name="importrun", index=index),
    ]


def _run_list_index(column: str) -> models.Index:
    """The index `GET /runs/?status=` or `?trigger=` reads: the runs of one value, newest first,
    each with its import (whose owner the list is scoped to)."""
    return models.Index(
        fields=[column, "-queued_at", "-id"],
        include=["scheduled_import"],
        name=f"run_{column}_list_idx",
    )


class BuildThenSwapIndex(Operation):
    """Replace `old` by `new` (of one name) with no moment without either: `new` built
    concurrently under a temporary name, `old` dropped concurrently, `new` renamed (ALTER INDEX
    RENAME takes a SHARE UPDATE EXCLUSIVE lock: reads and writes go on). Backwards the same,
    the other way round. Run again after a failure, it drops what a failed build left."""

    reversible = True

    def __init__(self, model_name: str, old: models.Index, new: models.Index) -> None:
        self.model_name, self.old, self.new = model_name, old, new

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return self.__class__.__name__, [], vars(self).copy()

    def state_forwards(self, app_label: str, state: Any) -> None:
        state.remove_index(app_label, self.model_name.lower(), self.old.name)
        state.add_index(app_label, self.model_name.lower(), self.new)

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        self._swap(schema_editor, model, self.new)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        self._swap(schema_editor, model, self.old)

    @staticmethod
    def _swap(schema_editor: Any, model: Any, wanted: models.Index) -> None:
        building = wanted.clone()
        building.name = f"{wanted.name}_new"
        schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{building.name}"')
        schema_editor.add_index(model, building, concurrently=True)
        schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{wanted.name}"')
        schema_editor.rename_index(model, building, wanted)

    def describe(self) -> str:
        return f"Build {self.new.name} anew beside the old one, then swap them"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("schedules", "0041_lost_ends_untold_are_found_by_their_own_index"),
    ]

    operations = [
        BuildThenSwapIndex(
            "importrun",
            old=models.Index(fields=["scheduled_import", "-queued_at"], name="run_history_idx"),
            new=models.Index(
                fields=["scheduled_import", "-queued_at", "-id"],
                include=HISTORY_COLUMNS,
                name="run_history_idx",
            ),
        ),
        BuildThenSwapIndex(
            "importrun",
            old=models.Index(fields=["queued_at"], include=["status"], name="run_queued_at_idx"),
            new=models.Index(
                fields=["queued_at", "id"], include=["status"], name="run_queued_at_idx"
            ),
        ),
        *_add_concurrently(_run_list_index("status")),
        *_add_concurrently(_run_list_index("trigger")),
        *_add_concurrently(
            models.Index(
                condition=models.Q(
                    status__in=["succeeded", "partial", "failed", "timed_out"],
                    duration_ms__isnull=False,
                ),
                fields=["scheduled_import", "-duration_ms"],
                include=["queued_at"],
                name="run_duration_rank_idx",
            )
        ),
    ]
