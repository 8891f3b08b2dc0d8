"""ReplacedCredential: a credential an import no longer has, kept (encrypted, as it was saved)
until a worker has hidden it in the runs saved under it (schedules.replaced_credentials)."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("schedules", "0021_hide_secrets_in_saved_runs"),
    ]

    operations = [
        migrations.CreateModel(
            name="ReplacedCredential",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("secret", models.TextField()),
                ("done_until", models.BigIntegerField(default=0)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("touched_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "scheduled_import",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="schedules.scheduledimport",
                    ),
                ),
            ],
        ),
    ]
