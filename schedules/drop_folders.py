"""Drop folders: the local directories an operator lets imports read (`IMPORT_DROP_DIRS`).

One rule for every surface: the API and the admin refuse a `file:///` source outside them when
the import is saved (schedules.validation), and the worker checks it again before it opens a
file (tasks.drop_folder), since a folder's links can change after the save. A path is allowed
when it lies under a listed folder both as written and once every symbolic link is resolved,
so neither `..` nor a link (to the file or to any folder above it) leads out.

Each user reads their own folder in each listed one, named by their username
(`/srv/drop/alice/`); staff read all of them. Every user of an installation could otherwise
read any other's deliveries, and with `move_processed` take them away: the owner's next run was
skipped as "no file matches yet". `IMPORT_DROP_DIRS_SHARED=1` lets every user read the whole
folders, for an installation whose users are one team.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings

from common import globs

from .text import has_control_characters

GLOB_CHARACTERS = frozenset("*?[")
# The longest file name Linux file systems take (NAME_MAX).
NAME_MAX = 255
# The longest pattern: a case-insensitive one of the longest name (`[Qq]` a letter).
PATTERN_MAX = 4 * NAME_MAX


def _refuse_past_name_max(name: str) -> None:
    """No file has a name past NAME_MAX bytes. A pattern is bounded by the names it matches
    and by its parts (what comparing two costs: validation, one queue per file, took seconds
    per pair of long ones, under the folder's lock), not by its bytes: a case-insensitive
    pattern of a 64-letter name (`[Qq][Uu]…`) is past 255 bytes, and was refused at save,
    and at every run of an import saved before."""
    if not GLOB_CHARACTERS & set(name):
        if len(os.fsencode(name)) > NAME_MAX:
            raise Refused(f"a file name is at most {NAME_MAX} bytes")
        return
    parts, shortest = globs.size(name)
    if shortest > NAME_MAX:
        raise Refused(f"no file can match the pattern: the names it matches are {shortest} bytes"
                      f" or more, and a file name is at most {NAME_MAX}")  # fmt: skip
    if parts > NAME_MAX:
        raise Refused(f"the pattern is at most {NAME_MAX} characters, sets [...] and stars"
                      f" (a set counts as one); it has {parts}")  # fmt: skip
    if len(os.fsencode(name)) > PATTERN_MAX:
        # Long sets cost their length at each comparison too: 1,397 bytes in 254 parts took
        # 0.76 s a pair, where a case-insensitive name's four bytes a letter stay within.
        raise Refused(f"a pattern is at most {PATTERN_MAX} bytes")


class Refused(ValueError):
    """The path may not be read; the message says why, in the user's words."""


@dataclass(frozen=True)
class DropPath:
    """Where a `file:///` source points: a folder (links resolved) and a file name or glob."""

    folder: str
    name: str

    @property
    def is_glob(self) -> bool:
        return bool(GLOB_CHARACTERS & set(self.name))

    @property
    def path(self) -> str:
        return os.path.join(self.folder, self.name)


def is_file_url(url: str) -> bool:
    try:
        return urlsplit(url or "").scheme.lower() == "file"
    except ValueError:
        return False  # (no URL at all: the validation says so)


def allowed_folders() -> list[str]:
    return [os.path.normpath(folder) for folder in settings.IMPORT_DROP_DIRS]


def folders_of(owner: Any) -> list[str]:
    """The folders the imports of `owner` (a user) may read: their own folder in each drop
    folder, or all of them for staff or on a shared installation."""
    folders = allowed_folders()
    if settings.IMPORT_DROP_DIRS_SHARED or owner.is_staff:
        return folders
    name = owner.get_username()
    if not name or name.startswith(".") or "/" in name:
        return []  # (`..` is a valid username: it would name the folder above)
    return [os.path.join(folder, name) for folder in folders]


def locate(url: str, folders: list[str] | None = None) -> DropPath:
    """The folder and file name (or glob) `url` names, or Refused when it may not be read.
    `folders`: those its import's owner may read (folders_of); all the listed ones if None."""
    # `?` and `#` are characters of the path here, not a query and a fragment: the glob
    # `products_?.csv` looked for `products_`, and `products#2.csv` read `products`.
    parts = urlsplit(url, allow_fragments=False)
    if parts.netloc not in ("", "localhost"):
        raise Refused("a file:// source names no host: write file:///folder/file.csv")
    path = unquote(parts.path + (f"?{parts.query}" if "?" in url else ""))
    if has_control_characters(path) or "\0" in path:
        raise Refused("the path must not contain control characters")
    if not allowed_folders():
        raise Refused(
            "file:// sources are off on this installation: the operator lists the folders "
            "imports may read in IMPORT_DROP_DIRS"
        )
    folders = allowed_folders() if folders is None else folders
    if not folders:
        raise Refused("file:// sources are off for this user: their name cannot be a folder's")
    own = "" if folders == allowed_folders() else ": the owner's own folders"
    where = f"only files under {', '.join(folders)} (IMPORT_DROP_DIRS{own}) can be imported"
    if not path.startswith("/"):
        raise Refused(f"the path must be absolute; {where}")
    segments = path.split("/")
    if ".." in segments:
        raise Refused(f"'..' is not allowed in the path; {where}")
    folder, name = os.path.split(os.path.normpath(path))
    if not name or path.endswith("/"):
        raise Refused("the path names a folder, not a file")
    if GLOB_CHARACTERS & set(folder):
        raise Refused("a pattern (*, ?, [...]) is allowed in the file name only")
    _refuse_past_name_max(name)
    listed = [f for f in folders if _inside(folder, f)]
    if not listed:
        raise Refused(f"{path} is outside the drop folders; {where}")
    real_folder = os.path.realpath(folder)
    real_roots = [os.path.realpath(f) for f in listed]
    if not any(_inside(real_folder, root) for root in real_roots):
        raise Refused(f"{folder} leads outside the drop folders through a link; {where}")
    located = DropPath(real_folder, name)
    if not located.is_glob:
        check_inside(located.path, folders)
    return located


def check_inside(path: str, folders: list[str] | None = None) -> str:
    """`path` with its links resolved, if that still lies in a drop folder (one of `folders`,
    when given); else Refused."""
    real = os.path.realpath(path)
    folders = allowed_folders() if folders is None else folders
    if not any(_inside(real, os.path.realpath(f)) for f in folders):
        raise Refused(f"{path} is a link that leads outside the drop folders")
    return real


def check_opened(fd: int, path: str, folders: list[str] | None = None) -> str:
    """Where the file or folder `fd` (opened by the name `path`) lies, if that is in a drop
    folder (one of `folders`, when given); else Refused, in check_inside's words.

    check_inside looks at a name, and the open after it looks the name up again: a folder of
    the path that its owner swapped for a link in between (in their own folder) led the open
    into another user's folder, and bob's run imported alice's file (attack hunt, finding 2).
    O_NOFOLLOW guards the last part of the path only. This looks at what was opened."""
    opened = opened_path(fd, path)
    folders = allowed_folders() if folders is None else folders
    if not any(_inside(opened, os.path.realpath(f)) for f in folders):
        raise Refused(f"{path} is a link that leads outside the drop folders")
    return opened


def open_folder(folder: str) -> int:
    """`folder`, a path with its links resolved (locate's), opened never through a link: its
    descriptor, to list it by. Refused when the folder opened is not the one named (a folder
    above it swapped for a link since it was resolved)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if opened_path(fd, folder) != folder:
            raise Refused(f"{folder} is a link that leads outside the drop folders")
    except BaseException:
        os.close(fd)
        raise
    return fd


def opened_path(fd: int, path: str) -> str:
    """The path of what `fd` is open on, as the kernel knows it (Linux: /proc/self/fd). Where
    /proc is not mounted: `path` resolved again, which must lead to that very file (its device
    and inode), or Refused; the path a swapped link leads to now names another file."""
    try:
        where = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        where = ""
    if where.startswith("/"):
        return where.removesuffix(" (deleted)")
    real = os.path.realpath(path)
    try:
        named, opened = os.stat(real), os.fstat(fd)
        same = (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)
    except OSError:
        same = False
    if not same:
        raise Refused(f"{path} is a link that leads outside the drop folders")
    return real


def file_etag(real_path: str, info: os.stat_result) -> str:
    """One version of a drop folder's file (its path once links are resolved, its size and
    modification time): a run keeps it (`source_etag`), and a file rewritten since differs."""
    where = hashlib.sha256(real_path.encode(errors="surrogateescape")).hexdigest()[:16]
    return f"file:{info.st_size}:{info.st_mtime_ns}:{where}"


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder
