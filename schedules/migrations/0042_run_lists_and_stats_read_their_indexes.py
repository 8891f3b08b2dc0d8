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
plain CREATE INDEX would block every run's writes while it builds. A rebuilt index is dropped
(IF EXISTS) first, and a new one too if a failed concurrent build left it INVALID, so that
`migrate` can simply be run again.
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models

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


def _drop_if_left(name: str) -> migrations.RunSQL:
    return migrations.RunSQL(
        f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"', reverse_sql=migrations.RunSQL.noop
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("schedules", "0041_lost_ends_untold_are_found_by_their_own_index"),
    ]

    operations = [
        RemoveIndexConcurrently(model_name="importrun", name="run_history_idx"),
        AddIndexConcurrently(
            model_name="importrun",
            index=models.Index(
                fields=["scheduled_import", "-queued_at", "-id"],
                include=HISTORY_COLUMNS,
                name="run_history_idx",
            ),
        ),
        RemoveIndexConcurrently(model_name="importrun", name="run_queued_at_idx"),
        AddIndexConcurrently(
            model_name="importrun",
            index=models.Index(
                fields=["queued_at", "id"], include=["status"], name="run_queued_at_idx"
            ),
        ),
        _drop_if_left("run_status_list_idx"),
        AddIndexConcurrently(
            model_name="importrun",
            index=models.Index(
                fields=["status", "-queued_at", "-id"],
                include=["scheduled_import"],
                name="run_status_list_idx",
            ),
        ),
        _drop_if_left("run_trigger_list_idx"),
        AddIndexConcurrently(
            model_name="importrun",
            index=models.Index(
                fields=["trigger", "-queued_at", "-id"],
                include=["scheduled_import"],
                name="run_trigger_list_idx",
            ),
        ),
        _drop_if_left("run_duration_rank_idx"),
        AddIndexConcurrently(
            model_name="importrun",
            index=models.Index(
                condition=models.Q(
                    status__in=["succeeded", "partial", "failed", "timed_out"],
                    duration_ms__isnull=False,
                ),
                fields=["scheduled_import", "-duration_ms"],
                include=["queued_at"],
                name="run_duration_rank_idx",
            ),
        ),
    ]
