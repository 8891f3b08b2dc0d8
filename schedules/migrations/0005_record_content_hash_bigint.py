from django.db import migrations, models

# Stored hashes cannot be converted between md5 text and hashtextextended: both directions
# reset them, so the next import of each dataset rewrites its rows once (same data, new hash).
TO_BIGINT = "ALTER TABLE schedules_record ALTER COLUMN content_hash TYPE bigint USING 0"
TO_TEXT = "ALTER TABLE schedules_record ALTER COLUMN content_hash TYPE varchar(32) USING ''"


class Migration(migrations.Migration):
    dependencies = [
        ("schedules", "0004_record_write_cost"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(TO_BIGINT, reverse_sql=TO_TEXT)],
            state_operations=[
                migrations.AlterField(
                    model_name="record",
                    name="content_hash",
                    field=models.BigIntegerField(),
                ),
            ],
        ),
    ]
