"""An import already late when 0036 added `missed_while_late` has missed at least one tick of
its streak: 0036 gave it 0, and every surface said "0 ticks missed since (5 in all)", the later
misses adding to that 0 for the rest of the streak. How many it missed before the upgrade is
not known: at least one, which the later misses add to."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("schedules", "0036_import_missed_while_late"),
    ]

    operations = [
        migrations.RunSQL(
            "UPDATE schedules_scheduledimport SET missed_while_late = 1"
            " WHERE late_since IS NOT NULL AND missed_while_late = 0",
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
