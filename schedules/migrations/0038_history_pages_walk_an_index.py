"""An import's history (`GET /imports/{id}/history/`, schedules.history.entries_for) pages by
cursor, newest first: (timestamp, id) of its auditlog entries. auditlog indexes `object_id`
and `timestamp` apart, so a page either read every entry of the import and sorted them, or
walked the timestamp index of every import's entries back to this one's: an import last
changed a year ago, behind a million newer entries of others, took 160 ms a page (26,000
buffers). This index holds one import's entries in the list's order: a page is a walk of it
from the cursor's place, 51 entries read.

auditlog's table, not a model of ours: the index is SQL (Django's state has no model to hang
it on, and `makemigrations` leaves it alone). Built concurrently, as 0018's: the entries are
written by every change and manual run; dropped first if a failed build left it INVALID.

Concurrently only outside a transaction: a caller that migrates inside one (a test's, going back
past it and forward again) gets the plain statements, as PostgreSQL refuses CONCURRENTLY there.
"""

from django.db import migrations

INDEX = "history_entries_idx"


def _concurrently(schema_editor) -> str:
    return "" if schema_editor.connection.in_atomic_block else " CONCURRENTLY"


def build(apps, schema_editor) -> None:
    how = _concurrently(schema_editor)
    if not how:
        # The transaction's deferred checks of entries it wrote are done first: PostgreSQL
        # builds no index on a table with trigger events pending.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    schema_editor.execute(f'DROP INDEX{how} IF EXISTS "{INDEX}"')
    schema_editor.execute(
        f'CREATE INDEX{how} "{INDEX}" ON "auditlog_logentry"'
        ' ("content_type_id", "object_id", "timestamp", "id")'
    )
    if not how:
        schema_editor.execute("SET CONSTRAINTS ALL DEFERRED")


def drop(apps, schema_editor) -> None:
    schema_editor.execute(f'DROP INDEX{_concurrently(schema_editor)} IF EXISTS "{INDEX}"')


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("schedules", "0037_imports_late_at_the_upgrade_missed_a_tick"),
        ("auditlog", "0017_add_actor_email"),
    ]

    operations = [migrations.RunPython(build, drop, elidable=False)]
