"""An http(s) source URL with a password in it (`https://user:secret@host/file.csv`) becomes
the same URL without it and a basic credential, encrypted, with that user and password: the
URL is shown wherever the import is, and saving one with a password is now refused
(schedules.validation.URL_PASSWORD). The request sent is the same: requests sent the URL's
user and password as basic authentication, the fetcher sends the credential's.

Left as they are, to be moved by their owner at their next edit: imports that already have a
credential (it would be replaced), and every such import when no encryption key is configured.

Backwards (put_url_passwords_back), a basic credential for its http(s) URL's own origin goes
back into the URL as `user:password@`, and the import has no credential again: as 0020 found
it, and moved again if 0020 runs again. Left as a credential, the password was dropped with the
credential columns by 0017's reverse, `migrate` saying OK, and the release before 0017 fetched
without it: HTTP 401 (upgrade hunt).
"""

import os
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError
from django.db import migrations

from common.switches import switch

# Set on, a credential that cannot go back is left behind instead of refused (0017's reverse
# then drops it with its columns): the operator has said it may be lost.
ALLOW_LOSS = "IMPORTBEAT_ALLOW_CREDENTIAL_LOSS"
SOURCE_URL_CHARS = 2000
SHOWN = 5


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


def with_userinfo(url: str, username: str, password: str) -> str:
    parts = urlsplit(url)
    userinfo = f"{quote(username, safe='')}:{quote(password, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))


def loss_allowed() -> bool:
    try:
        return switch(ALLOW_LOSS, os.environ.get(ALLOW_LOSS), False)
    except ValueError as error:
        raise CommandError(str(error)) from None


def put_url_passwords_back(apps, schema_editor):
    """The reverse of move_url_passwords: every basic credential an http(s) URL can carry (for
    the URL's own origin, the URL without a user of its own) back into its URL. A basic
    credential saved through the API by a release from 0017 to 0019 goes into its URL too: it
    cannot be told from one 0020 moved, and those releases send a URL's user and password as
    the same basic authentication.

    Refused in words when one cannot be read (no encryption key, or not the
    key it was saved with) or would make its URL longer than a URL is kept; unless the operator
    allows the loss (ALLOW_LOSS), then those stay credentials, which 0017's reverse drops."""
    from schedules import credentials

    ScheduledImport = apps.get_model("schedules", "ScheduledImport")
    candidates = ScheduledImport.objects.filter(
        credential_kind="basic", source_url__regex=r"^[Hh][Tt][Tt][Pp][Ss]?://[^@/?#]*([/?#]|$)"
    )
    moved, stuck = [], []
    reason = ""
    for imp in candidates.select_related("owner").order_by("pk").iterator():
        if imp.credential_origin != credentials.origin(imp.source_url):
            continue  # not one 0020 can have made: 0017's reverse says what becomes of it
        try:
            saved = credentials.decrypt(imp.credential_secret)
            url = with_userinfo(imp.source_url, saved["username"], saved["password"])
        except ImproperlyConfigured as error:
            stuck.append(imp)
            reason = str(error)
            continue
        except (KeyError, TypeError):
            stuck.append(imp)
            reason = reason or "a saved basic credential without a username and a password"
            continue
        if len(url) > SOURCE_URL_CHARS:
            stuck.append(imp)
            reason = reason or f"a URL with its password would be longer than {SOURCE_URL_CHARS}"
            continue
        moved.append((imp, url))
    if stuck and not loss_allowed():
        named = ", ".join(
            f"#{imp.pk} {imp.name!r} ({imp.owner.username})" for imp in stuck[:SHOWN]
        )
        more = f" and {len(stuck) - SHOWN} more" if len(stuck) > SHOWN else ""
        # Said where migrate stopped: the migrations after 0020 are unapplied by now, each in
        # its own transaction, and this one is not.
        raise CommandError(
            f"migrating back past 0020 puts the passwords it moved out of source URLs back into "
            f"them, and {len(stuck)} cannot go back ({reason}): {named}{more}. Migrate stopped "
            f"with 0020 still applied (`migrate` takes the database forward again). Set "
            f"IMPORTBEAT_ENCRYPTION_KEY to the key they were saved with and run migrate again; "
            f"or set {ALLOW_LOSS}=1 to leave them as credentials, which migrating back below "
            f"0017 discards (their imports then fetch without a password)."
        )
    for imp, url in moved:
        imp.source_url = url
        imp.credential_kind = imp.credential_origin = imp.credential_secret = ""
        imp.save(
            update_fields=[
                "source_url", "credential_kind", "credential_origin", "credential_secret",
            ]
        )  # fmt: skip
    if moved or stuck:
        # The migrate command's own output, as 0021's.
        print(
            f"\n    basic credentials put back into their source URLs: {len(moved)}"
            + (f"; left as credentials ({ALLOW_LOSS}): {len(stuck)}" if stuck else "")
        )


class Migration(migrations.Migration):
    dependencies = [
        ("schedules", "0019_attention_indexes"),
    ]

    operations = [
        migrations.RunPython(move_url_passwords, put_url_passwords_back),
    ]
