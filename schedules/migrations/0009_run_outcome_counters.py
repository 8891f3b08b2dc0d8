"""Issue 16: partial runs counted apart from successful ones; a run remembers that its rows
committed."""

from django.db import migrations, models
from django.db.models import Count, Q


def count_partial_runs(apps, schema_editor):
    # successful_runs used to include partial runs: move the ones still in the run log.
    ScheduledImport = apps.get_model("schedules", "ScheduledImport")
    imports = ScheduledImport.objects.annotate(
        partial=Count("runs", filter=Q(runs__status="partial"))
    )
    for imp in imports.filter(partial__gt=0):
        imp.partial_runs = min(imp.partial, imp.successful_runs)
        imp.successful_runs -= imp.partial_runs
        imp.save(update_fields=["partial_runs", "successful_runs"])


def fold_partial_runs(apps, schema_editor):
    ScheduledImport = apps.get_model("schedules", "ScheduledImport")
    ScheduledImport.objects.update(
        successful_runs=models.F("successful_runs") + models.F("partial_runs")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("schedules", "0008_scheduler_next_tick_and_late"),
    ]

    operations = [
        migrations.AddField(
            model_name="scheduledimport",
            name="partial_runs",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="importrun",
            name="rows_committed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(count_partial_runs, fold_partial_runs),
    ]
