"""Beat entries named after their import (`products (alice) · import #3`), not
`importbeat:import:3`; new and re-saved imports get the name from sync_periodic_task()."""

from django.db import migrations

NAME_LENGTH = 200


def name_after_imports(apps, schema_editor):
    ScheduledImport = apps.get_model("schedules", "ScheduledImport")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for imp in ScheduledImport.objects.exclude(periodic_task=None).select_related("owner"):
        suffix = f" ({imp.owner.username}) · import #{imp.pk}"
        name = imp.name[: NAME_LENGTH - len(suffix)] + suffix
        PeriodicTask.objects.filter(pk=imp.periodic_task_id).update(name=name)


def name_by_id(apps, schema_editor):
    ScheduledImport = apps.get_model("schedules", "ScheduledImport")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for imp in ScheduledImport.objects.exclude(periodic_task=None):
        PeriodicTask.objects.filter(pk=imp.periodic_task_id).update(
            name=f"importbeat:import:{imp.pk}"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("schedules", "0010_run_tallies"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(name_after_imports, name_by_id)]
