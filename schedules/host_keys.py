"""SFTP host keys: pinned on an import, never trusted anew on every use.

The first check or run of an import with no key pinned records the server's key (trust on
first use, once). Afterwards a run or check that meets a different key fails, permanently, and
leaves that key here as "offered"; only a user accepting it (the API's `accept-host-key`, the
admin's button) makes it the pinned key. Writes are conditional UPDATEs, so two first runs
racing pin one key, and the loser compares against it.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from . import history
from .models import ScheduledImport, host_key_fingerprint


class NoOfferedKey(Exception):
    """There is no new host key to accept."""


def pin_first(import_id: int, offered: str) -> str:
    """Pin `offered` if the import has no key yet; the key pinned now, whoever pinned it."""
    ScheduledImport.objects.filter(pk=import_id, sftp_host_key="").update(sftp_host_key=offered)
    pinned = (
        ScheduledImport.objects.filter(pk=import_id).values_list("sftp_host_key", flat=True).first()
    )
    return pinned if pinned is not None else offered


def offer(import_id: int, offered: str) -> None:
    """Keep a changed key the server showed, for a user to look at and accept."""
    ScheduledImport.objects.filter(pk=import_id).update(sftp_offered_host_key=offered)


def accept_offered(imp: ScheduledImport, user: AbstractBaseUser | None) -> ScheduledImport:
    """Pin the key the server offered last; recorded in the import's history."""
    offered = imp.sftp_offered_host_key
    if not offered:
        raise NoOfferedKey("the server has offered no new host key for this import")
    old = imp.host_key_fingerprint
    updated = ScheduledImport.objects.filter(pk=imp.pk, sftp_offered_host_key=offered).update(
        sftp_host_key=offered, sftp_offered_host_key=""
    )
    if not updated:
        raise NoOfferedKey("the offered host key changed meanwhile; look at it again")
    imp.refresh_from_db()
    history.record_event(imp, "host key accepted", user, old=old, new=host_key_fingerprint(offered))
    return imp
