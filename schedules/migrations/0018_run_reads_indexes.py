"""Reads at a year of history (issue 15): the runs in progress get their own partial index,
and the queued_at index carries the status, so the dashboard's chart reads the index alone.

Built concurrently: the runs table of a busy deployment holds millions of rows, and a plain
CREATE INDEX would block every run's writes while it builds.

A concurrent build that fails or is cancelled (an operator's cancel, a server's
statement_timeout, a deadlock) leaves its index behind, INVALID, and this migration unapplied:
run again, it failed on "relation already exists" every time, until someone dropped the index
by hand. Each index is dropped first if it is there (RemoveIndexConcurrently's DROP ... IF
EXISTS for the first), so `migrate` can simply be run again.
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("schedules", "0017_source_credentials_and_sftp_host_keys"),
    ]

    operations = [
        RemoveIndexConcurrently(
            model_name="importrun",
            name="run_queued_at_idx",
        ),
        AddIndexConcurrently(
            model_name="importrun",
            index=models.Index(fields=["queued_at"], include=("status",), name="run_queued_at_idx"),
        ),
        migrations.RunSQL(
            'DROP INDEX CONCURRENTLY IF EXISTS "run_in_progress_idx"',
            reverse_sql=migrations.RunSQL.noop,
        ),
        AddIndexConcurrently(
            model_name="importrun",
            index=models.Index(
                condition=models.Q(("status__in", ["queued", "running", "retrying"])),
                fields=["queued_at"],
                name="run_in_progress_idx",
            ),
        ),
    ]
