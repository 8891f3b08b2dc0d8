"""A file still being written is not imported in part.

A partner's export, `cp`, `scp` or an SFTP upload writes a file in place, over seconds or
minutes. A tick that reads it meanwhile gets a prefix of it: fewer rows, or a last row cut
short, and with `mode: sync` every record beyond the cut deleted. Nothing in the bytes says
they are not the whole file, so a drop folder's and an SFTP server's file is looked at twice:

- before it is read (quiet_version): one changed less than FILE_SETTLE_SECONDS ago is looked
  at again once it has been quiet that long, and must not have changed meanwhile; so one
  being written now is refused before it is read and staged to its current end for nothing;
- once its end has been read, before any row is written (check_whole): it must be as it was
  when the read began (size and modification time), and hold as many bytes as were read.

Either way the run fails transiently and is retried with the import's backoff, by when the
file is usually whole. A writer that pauses longer than the settle time between two writes
cannot be told from one that finished (hidden upload names and a glob, or a rename once
written, are the sure ways; README, Drop folders). The modification time is the file
server's, compared with the worker's clock (an HTTP server's with its own `Date`): a file
server's clock ahead of the worker's costs one wait; one behind it by more than the settle time
makes a file being written look settled, and only check_whole's look still catches it (a
writer paused between two writes across the whole read is not caught).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from .errors import TransientImportError


@dataclass(frozen=True)
class FileVersion:
    """What tells one state of a file from another without reading it."""

    size: int  # -1: not told (an HTTP body sent in chunks)
    mtime: float  # seconds since the epoch, on the file server's clock
    tag: str = ""  # an HTTP server's ETag


def quiet_version(
    path: str,
    look: Callable[[], FileVersion],
    now: FileVersion | None = None,
    server_time: float | None = None,
    stop_if_asked: Callable[[], None] | None = None,
) -> FileVersion:
    """The state of the file `path` once it has been quiet for FILE_SETTLE_SECONDS: one changed
    less than that ago is looked at again when the time is up, and must not have changed
    meanwhile (TransientImportError). `now`: its state, when the caller has just read it;
    `server_time`: the file server's clock then, when it tells it (an HTTP `Date`);
    `stop_if_asked`: raises once the run was asked to stop, asked once a second of the wait
    (a cancel waited for the whole settle period).

    Asked before the file is read, so that one being written now is not read and staged to
    its current end for nothing."""
    now = now or look()
    settle = settings.FILE_SETTLE_SECONDS
    wait = unsettled_for(now, server_time)
    if not wait:
        return now
    # A modification time ahead of the server's clock waits one settle period, no more.
    until = time.monotonic() + min(wait, settle)
    while (left := until - time.monotonic()) > 0:
        time.sleep(min(left, 1.0))
        if stop_if_asked is not None:
            stop_if_asked()
    again = look()
    if again != now:
        raise _still_being_written(
            path, f"it changed within {settle:g} s of its last change: {_change(now, again)}"
        )
    return now


def unsettled_for(version: FileVersion, server_time: float | None = None) -> float:
    """How much longer a file in state `version` must stay quiet to count as written (0 once
    FILE_SETTLE_SECONDS have passed since its last change)."""
    settle = settings.FILE_SETTLE_SECONDS
    quiet = (time.time() if server_time is None else server_time) - version.mtime
    return 0.0 if settle <= 0 or quiet >= settle else settle - quiet


def check_whole(
    path: str, opened: FileVersion, bytes_read: int, look: Callable[[], FileVersion]
) -> None:
    """Raise TransientImportError unless the file `path`, whose end the run has just read, is
    still as it was opened (`opened`: quiet_version's, so quiet for FILE_SETTLE_SECONDS before
    the read began); `look` reads its state now, from the open file (a file replaced by a
    rename is not the one read, and the one read is whole)."""
    now = look()
    if now != opened or now.size != bytes_read:
        why = f"it changed while the run read it: {_change(opened, now)}"
        raise _still_being_written(path, why)


def _change(before: FileVersion, after: FileVersion) -> str:
    if after.size != before.size:
        if min(before.size, after.size) < 0:
            return "its length changed"
        return f"{before.size:,} bytes, then {after.size:,}"
    if after.mtime != before.mtime:
        return "its modification time moved"
    return "its ETag changed"


def _still_being_written(path: str, why: str) -> TransientImportError:
    return TransientImportError(
        f"{path} is still being written ({why}); the run is tried again rather than import "
        "part of it"
    )
