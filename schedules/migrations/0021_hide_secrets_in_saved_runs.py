"""The runs saved before the runner hid an import's credential in their texts get it hidden now,
by the same hiding (schedules.saved_secrets): a source that repeated the credential it was sent
(a server echoing the request's headers, a reason phrase) left it in the run's message, its
attempts, its traceback or its row errors, which the API, the admin, alerts and webhooks show.

Only when the encryption keys are configured at migration time: without them no credential can
be read, and `python manage.py hide_run_secrets` does it later (the migration says so).
"""

from django.db import migrations


def hide_saved_run_secrets(apps, schema_editor):
    from schedules import credentials, saved_secrets

    ScheduledImport = apps.get_model("schedules", "ScheduledImport")
    if not ScheduledImport.objects.exclude(credential_secret="").exists():
        return
    if not credentials.keys_configured():
        # The migrate command's own output: an operator reads it where the step was skipped.
        print(f"\n    runs not looked at: {saved_secrets.NO_KEY}")
        return
    tally = saved_secrets.hide_in_runs(apps.get_model("schedules", "ImportRun"))
    print(f"\n    {tally.said('runs')}")


class Migration(migrations.Migration):
    dependencies = [
        ("schedules", "0020_url_passwords_into_credentials"),
    ]

    operations = [
        # Backwards nothing: a hidden secret stays hidden.
        migrations.RunPython(hide_saved_run_secrets, migrations.RunPython.noop),
    ]
