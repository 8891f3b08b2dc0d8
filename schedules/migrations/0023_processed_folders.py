"""ProcessedFolder: the `processed/` folders runs filed drop-folder files into, which retention
keeps cleaning after their import is gone (tasks.processed_retention)."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("schedules", "0022_replaced_credentials"),
    ]

    operations = [
        migrations.CreateModel(
            name="ProcessedFolder",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("path", models.TextField(unique=True)),
                ("seen_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
    ]
