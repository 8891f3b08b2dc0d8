"""Datasets keep the field names their records hold (Dataset.fields), which the export's
header read by a scan of every record: at a million wide records or so, past the web's
statement limit, so that export answered 503 every time.

Added NULL (unknown), without a default: no table rewrite and no reading of records here. Each
dataset's names are read once, by its first export or `manage.py recount_records`, or set by
its next first load or full sync, and kept by every merge after.
"""

import django.contrib.postgres.fields
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("schedules", "0043_lost_ends_unstored_are_found_by_their_own_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="dataset",
            name="fields",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.TextField(), blank=True, editable=False, null=True, size=None
            ),
        ),
    ]
