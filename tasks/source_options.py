"""What a fetch needs of an import besides its URL: the decrypted credential, the pinned SFTP
host key, and where to report what it found (a first host key, a changed one, the file taken)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.core.exceptions import ImproperlyConfigured

from schedules import credentials, drop_folders, host_keys, processed_files, services
from schedules.drop_folders import is_file_url
from schedules.models import ImportRun, ScheduledImport

from .errors import PermanentImportError
from .transcode import transcoded_from


@dataclass(frozen=True)
class SourceOptions:
    # The decrypted credential ({"kind", ...parts}); kept out of repr, so that no log line or
    # traceback that prints the options prints the secret.
    credential: dict[str, str] | None = field(default=None, repr=False)
    # The origin the credential was saved for: it goes to no other (tasks.fetch).
    credential_origin: str = ""
    host_key: str = ""
    # The file to read out of a zip archive holding several ("" when it holds one).
    member: str = ""
    # A server's key when none is pinned: returns the key pinned now (the import's, or `offered`
    # for an import not saved yet, whose check only shows the key).
    pin_host_key: Callable[[str], str] | None = field(default=None, repr=False)
    # A key different from the pinned one: kept for a user to accept.
    offer_host_key: Callable[[str], None] | None = field(default=None, repr=False)
    # The file taken (a glob's match), for the run's log.
    on_source_file: Callable[[str], None] | None = field(default=None, repr=False)
    # A run takes a drop folder's or SFTP file only once it is whole (tasks.whole_file); the
    # check before save shows its first rows as they are.
    whole: bool = True
    # The drop folders the import's owner may read (schedules.drop_folders.folders_of); None:
    # every listed one.
    drop_folders: list[str] | None = None
    # A drop folder's glob whose files are filed away once imported is a queue of deliveries:
    # the oldest one not imported before is taken (tasks.drop_folder), else the newest. Given
    # the versions (etags) of the files waiting, this returns those a run already imported.
    imported_before: Callable[[list[str]], set[str]] | None = field(default=None, repr=False)
    # A wide encoding (UTF-16, UTF-32) the file is read from, as UTF-8 (tasks.transcode).
    transcode_from: str = ""
    # A run's: raises RunCancelled once the run was asked to stop. A download's watchdog asks
    # while the server sends nothing, which the run's own look at each read never sees
    # (tasks.fetch_watchdog).
    stop_if_asked: Callable[[], None] | None = field(default=None, repr=False)


def source_options(imp: ScheduledImport, run: ImportRun | None = None) -> SourceOptions:
    """The options of `imp`'s fetch; with `run`, the file taken is recorded on that run."""
    credential = None
    if imp.credential_secret:
        try:
            credential = credentials.decrypt(imp.credential_secret)
        except ImproperlyConfigured as error:
            raise PermanentImportError(f"the import's credential cannot be used: {error}") from None
    saved = imp.pk is not None
    return SourceOptions(
        credential=credential,
        credential_origin=imp.credential_origin,
        host_key=imp.sftp_host_key,
        member=imp.source_member or "",
        pin_host_key=(lambda key: host_keys.pin_first(imp.pk, key)) if saved else None,
        offer_host_key=(lambda key: host_keys.offer(imp.pk, key)) if saved else None,
        on_source_file=(lambda path: services.record_source_file(run, path)) if run else None,
        imported_before=(
            (lambda etags: processed_files.imported_before(imp.pk, etags) if saved else set())
            if imp.move_processed
            else None
        ),
        transcode_from=transcoded_from(imp.encoding),
        drop_folders=_drop_folders(imp),
    )


def _drop_folders(imp: ScheduledImport) -> list[str] | None:
    """The drop folders `imp`'s owner may read; only a drop folder's import asks for its owner,
    so no other import's run costs a statement more."""
    if not is_file_url(imp.source_url):
        return None
    return drop_folders.folders_of(imp.owner) if imp.owner_id else []
