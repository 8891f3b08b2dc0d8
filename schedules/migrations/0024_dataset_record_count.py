"""Dataset.record_count: each dataset's records counted once here, then kept by their writers
(an import's merge, a deletion by hand), instead of counted on every read."""

from django.db import migrations, models

COUNT_EXISTING = (
    "UPDATE schedules_dataset d SET record_count ="
    " (SELECT count(*) FROM schedules_record r WHERE r.dataset_id = d.id)"
)


class Migration(migrations.Migration):
    dependencies = [
        ("schedules", "0023_processed_folders"),
    ]

    operations = [
        migrations.AddField(
            model_name="dataset",
            name="record_count",
            field=models.BigIntegerField(default=0, editable=False),
        ),
        # Reversed, the column goes with the field: nothing to undo here.
        migrations.RunSQL(COUNT_EXISTING, migrations.RunSQL.noop),
    ]
