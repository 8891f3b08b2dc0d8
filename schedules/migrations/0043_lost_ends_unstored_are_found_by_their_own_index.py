"""The sweep's scan of lost attempts whose end Flower was told and the result backend was not
(the backend away or silent at that pass: tasks.lost_tasks.store_unstored_ends) reads its own
partial index, of those runs only.

No later pass stored such an end: the task kept its attempt's PROGRESS (or a wait's RETRY) in
the result backend for a day, while Flower and the run log had its end (results3 hunt). The index
holds only the runs whose end is still to store, a handful, left as soon as one is stored
(services.note_lost_task_end_stored).

Built concurrently, as 0041's: the runs table of a busy deployment holds millions of rows. A
build that failed or was cancelled leaves its index INVALID and this migration unapplied: it is
dropped first if it is there, so `migrate` can simply be run again.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("schedules", "0042_run_lists_and_stats_read_their_indexes"),
    ]

    operations = [
        migrations.RunSQL(
            'DROP INDEX CONCURRENTLY IF EXISTS "run_lost_end_unstored_idx"',
            reverse_sql=migrations.RunSQL.noop,
        ),
        AddIndexConcurrently(
            model_name="importrun",
            index=models.Index(
                condition=models.Q(
                    ("error_details__contains", {"lost_task_end": {"stored": False}})
                ),
                fields=["finished_at"],
                name="run_lost_end_unstored_idx",
            ),
        ),
    ]
