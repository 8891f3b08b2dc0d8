"""An http(s) source URL with a password in it (`https://user:secret@host/file.csv`) becomes
the same URL without it and a basic credential, encrypted, with that user and password: the
URL is shown wherever the import is, and saving one with a password is now refused
(schedules.validation.URL_PASSWORD). The request sent is the same: requests sent the URL's
user and password as basic authentication, the fetcher sends the credential's.

Left as they are, to be moved by their owner at their next edit: imports that already have a
credential (it would be replaced), and every such import when no encryption key is configured.
"""

from urllib.parse import unquote, urlsplit, urlunsplit

from django.conf import settings
from django.db import migrations


def without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def move_url_passwords(apps, schema_editor):
    from schedules import credentials

    if not any(key.strip() for key in settings.IMPORTBEAT_ENCRYPTION_KEYS):
        return
    ScheduledImport = apps.get_model("schedules", "ScheduledImport")
    candidates = ScheduledImport.objects.filter(
        credential_kind="", source_url__regex=r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]*:[^/?#]*@"
    )
    for imp in candidates.iterator():
        parts = urlsplit(imp.source_url)
        if parts.password is None:
            continue
        url = without_userinfo(imp.source_url)
        imp.credential_secret = credentials.encrypt(
            {
                "kind": "basic",
                "username": unquote(parts.username or ""),
                "password": unquote(parts.password),
            }
        )
        imp.credential_kind = "basic"
        imp.credential_origin = credentials.origin(url)
        imp.source_url = url
        imp.save(
            update_fields=[
                "source_url", "credential_kind", "credential_origin", "credential_secret",
            ]
        )  # fmt: skip


class Migration(migrations.Migration):
    dependencies = [
        ("schedules", "0019_attention_indexes"),
    ]

    operations = [
        # Backwards the credentials stay: the URLs keep working without their passwords.
        migrations.RunPython(move_url_passwords, migrations.RunPython.noop),
    ]
