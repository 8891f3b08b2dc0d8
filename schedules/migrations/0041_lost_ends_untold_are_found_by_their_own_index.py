"""The sweep's scan of lost attempts whose end was not told (the broker away when the sweep
ended them: tasks.lost_tasks.tell_untold_ends) reads its own partial index, of those runs only.

Bounded to runs queued in the last 6 h, the scan walked the queued_at index through every run of
those hours (41-79 ms at 20,800 runs an hour), and a run queued before that (a long import, or
one that waited its turn) was never told: its task stayed STARTED in Flower and in the result
backend for good (sweep5 hunt). The index holds only the runs whose end is untold, a handful,
left as soon as one is told (services.claim_lost_task_end); the scan needs no bound by age.

Built concurrently, as 0018's: the runs table of a busy deployment holds millions of rows. A
build that failed or was cancelled leaves its index INVALID and this migration unapplied: it is
dropped first if it is there, so `migrate` can simply be run again.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("schedules", "0040_a_webhook_being_sent_is_claimed"),
    ]

    operations = [
        migrations.RunSQL(
            'DROP INDEX CONCURRENTLY IF EXISTS "run_lost_end_untold_idx"',
            reverse_sql=migrations.RunSQL.noop,
        ),
        AddIndexConcurrently(
            model_name="importrun",
            index=models.Index(
                condition=models.Q(("error_details__contains", {"lost_task_end": {"told": False}})),
                fields=["finished_at"],
                name="run_lost_end_untold_idx",
            ),
        ),
    ]
