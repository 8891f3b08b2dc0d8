"""The admin says "notification deliveries" and "run tallies" (Django made "deliverys" and
"tallys" of their names)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("schedules", "0024_dataset_record_count"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="notificationdelivery",
            options={"verbose_name_plural": "notification deliveries"},
        ),
        migrations.AlterModelOptions(
            name="runtally",
            options={"verbose_name_plural": "run tallies"},
        ),
    ]
