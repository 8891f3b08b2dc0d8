"""Fetch a file over SFTP (`sftp://user@host[:port]/path`) as tasks.fetch fetches over HTTP.

The same ByteStream (progress, size cap), the same watchdog (deadline, minimum rate), the same
private-address rule (the socket connects to the address that was checked), and the same
error classes: a server that cannot be reached or breaks off is transient; a refused
credential, a missing file or a changed host key is permanent. The host key must be the one
pinned on the import (schedules.host_keys); with none pinned, the first key seen is pinned.

A glob in the file name (`/out/products_*.csv`) takes the newest regular file that matches
(by modification time, then name, its numbers as numbers). The folder's listing is read an
answer at a time and only the newest match so far is kept, under caps on its names and bytes
(a server listing without end grew the worker until the download's deadline). The file's
path, size and mtime are its validators: the importer's same-file shortcut sees an unchanged
file without reading it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import posixpath
import socket
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from email.utils import formatdate
from urllib.parse import unquote, urlsplit

import paramiko
from django.conf import settings

from common import globs
from common.error_words import ERRNO_TEXT, plain
from schedules.credentials import origin
from schedules.models import host_key_fingerprint

from .addresses import public_addresses
from .byte_stream import ByteStream, NotModified, Validators
from .drop_folder import refuse_unnamed
from .errors import NothingToImport, PermanentImportError, TransientImportError
from .fetch_watchdog import DOWNLOAD, Watchdog
from .source_options import SourceOptions
from .whole_file import FileVersion, check_whole, quiet_version

DEFAULT_PORT = 22
# One SFTP read request (paramiko's largest), and how many are in flight at once: a window
# bounds the memory a fast server can fill while the importer is busy (16 MiB; more requests
# in flight read faster: tests/bench/bench_sftp_stream.py).
REQUEST_BYTES = 32 * 1024
WINDOW_REQUESTS = 512
GLOB_CHARACTERS = "*?["
KEY_CLASSES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)
# A glob's folder listing: past either, the run fails. Only the newest match is kept, so these
# bound the time a listing takes, not memory: a hostile server listing names without end kept
# every one, and the worker grew ~20 MB/s until FETCH_TOTAL_TIMEOUT_SECONDS (30 min; hunt).
MAX_LISTING_NAMES = 100_000
MAX_LISTING_BYTES = 64 * 1024 * 1024
# paramiko's "Error reading SSH protocol banner": what answered is not an SSH server.
NOT_SSH = "the server did not answer as an SSH server: check the URL's host and port"

logger = logging.getLogger(__name__)


class _Connection:
    """What the watchdog shuts down when a download is too slow: the TCP socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock


@contextmanager
def open_sftp(
    url: str,
    on_read: Callable[[int], None] | None,
    unless: Validators | None,
    options: SourceOptions,
    watchdog: Watchdog,
) -> Iterator[tuple[ByteStream, int | None]]:
    """Yield (byte stream, size) of the file `url` names (the newest match of a glob)."""
    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise PermanentImportError(f"the URL's port is not valid: {url}") from None
    host, user = parts.hostname or "", unquote(parts.username or "")
    sock = _connect(host, port)
    watchdog.connections.append(_Connection(sock))
    transport = paramiko.Transport(sock)
    try:
        _start(transport, host, options, watchdog)
        # The credential goes to the origin it was saved for only, as over HTTP.
        saved_for = options.credential_origin
        credential = options.credential if origin(url) == saved_for else None
        _authenticate(transport, user, credential)
        try:
            sftp = paramiko.SFTPClient.from_transport(transport)
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise _lost(watchdog, "could not open an SFTP session", error) from error
        sftp.get_channel().settimeout(settings.FETCH_READ_TIMEOUT_SECONDS)
        path, attributes = _pick(sftp, unquote(parts.path), watchdog)
        if options.on_source_file:
            options.on_source_file(path)
        validators = _validators(path, attributes)
        if unless is not None and unless.etag and unless.etag == validators.etag:
            raise NotModified
        try:
            remote = sftp.open(path, "rb")
        except OSError as error:
            raise _file_error(path, error) from error
        with remote:
            look = (lambda: _look(sftp, remote, path)) if options.whole else None
            try:
                opened = (
                    quiet_version(path, look, stop_if_asked=options.stop_if_asked)
                    if look
                    else _version(attributes)
                )
            except (OSError, paramiko.SSHException, EOFError) as error:
                raise _lost(watchdog, "the SFTP server broke off", error) from error
            chunks = _chunks(remote, path, attributes.st_size or 0, opened, watchdog, look)
            stream = ByteStream(chunks, settings.MAX_IMPORT_BYTES, on_read, watchdog)
            stream.validators = validators
            stream.source_file = path
            yield stream, attributes.st_size
    finally:
        transport.close()
        with suppress(OSError):
            sock.close()


def _connect(host: str, port: int) -> socket.socket:
    """A TCP connection to an address the private-address rule allows (the checked one: no
    second DNS answer)."""
    addresses = public_addresses(host, port) or [host]
    try:
        return socket.create_connection(
            (addresses[0], port), timeout=settings.FETCH_CONNECT_TIMEOUT_SECONDS
        )
    except TimeoutError as error:
        raise TransientImportError(
            f"cannot reach {host}:{port}: the connection timed out"
        ) from error
    except OSError as error:
        reason = (error.strerror or "the connection failed").lower()
        raise TransientImportError(f"cannot reach {host}:{port}: {reason}") from error


def _start(transport: paramiko.Transport, host: str, options: SourceOptions, watchdog) -> None:
    """The SSH handshake, then the host key against the pinned one."""
    transport.banner_timeout = settings.FETCH_CONNECT_TIMEOUT_SECONDS
    transport.handshake_timeout = settings.FETCH_CONNECT_TIMEOUT_SECONDS
    transport.auth_timeout = settings.FETCH_CONNECT_TIMEOUT_SECONDS
    try:
        transport.start_client(timeout=settings.FETCH_CONNECT_TIMEOUT_SECONDS)
    except (paramiko.SSHException, OSError, EOFError) as error:
        raise _lost(watchdog, f"the SSH handshake with {host} failed", error) from error
    key = transport.get_remote_server_key()
    offered = f"{key.get_name()} {key.get_base64()}"
    pinned = options.host_key
    if not pinned:
        pinned = options.pin_host_key(offered) if options.pin_host_key else offered
    if pinned != offered:
        if options.offer_host_key:
            options.offer_host_key(offered)
        raise PermanentImportError(
            f"the SFTP server's host key changed: the import trusts {host_key_fingerprint(pinned)}"
            f", the server showed {host_key_fingerprint(offered)}; nothing was fetched. If the "
            f"server's key was changed on purpose, accept the new key on the import"
        )


def _authenticate(
    transport: paramiko.Transport, user: str, credential: dict[str, str] | None
) -> None:
    kind = (credential or {}).get("kind")
    try:
        if kind == "password":
            transport.auth_password(user, credential["password"], fallback=False)
        elif kind == "private_key":
            transport.auth_publickey(user, _private_key(credential))
        else:
            raise PermanentImportError(
                "the SFTP server needs a credential: give the import a password or a private key"
            )
    except paramiko.BadAuthenticationType as error:
        allowed = ", ".join(error.allowed_types) or "none"
        raise PermanentImportError(
            f"the SFTP server does not accept this kind of credential (it accepts: {allowed})"
        ) from None
    except paramiko.AuthenticationException:
        raise PermanentImportError(
            f"the SFTP server refused the credential for user {user!r}"
        ) from None
    except (paramiko.SSHException, OSError, EOFError) as error:
        raise TransientImportError(
            f"the SFTP server broke off while checking the credential ({_reason(error)})"
        ) from None


def _private_key(credential: dict[str, str]) -> paramiko.PKey:
    text, passphrase = credential["private_key"].strip() + "\n", credential.get("passphrase")
    for key_class in KEY_CLASSES:
        try:
            return key_class.from_private_key(io.StringIO(text), password=passphrase or None)
        except paramiko.PasswordRequiredException:
            raise PermanentImportError("the private key needs its passphrase") from None
        except (paramiko.SSHException, ValueError):
            continue
    raise PermanentImportError(
        "the private key cannot be read (an OpenSSH or PEM key, with its passphrase if it has one)"
    )


def _pick(
    sftp: paramiko.SFTPClient, path: str, watchdog: Watchdog
) -> tuple[str, paramiko.SFTPAttributes]:
    """The file to fetch and its attributes: `path`, or the newest match of its glob."""
    folder, name = posixpath.split(path)
    globbed = any(c in name for c in GLOB_CHARACTERS)
    try:
        if not globbed:
            attributes = sftp.stat(path)
            if not stat.S_ISREG(attributes.st_mode or 0):
                raise PermanentImportError(f"{path} on the SFTP server is not a file")
            return path, attributes
        newest = _newest_match(sftp, folder or "/", name, watchdog)
    except OSError as error:
        raise _file_error(folder if globbed else path, error) from error
    except (paramiko.SSHException, EOFError) as error:
        raise _lost(watchdog, "the SFTP server broke off", error) from error
    if newest is None:
        raise NothingToImport(f"no file on the SFTP server matches {path} yet")
    # The file taken alone: an older match named so is no concern of this run.
    refuse_unnamed(newest.filename, folder)
    return posixpath.join(folder, newest.filename), newest


def _newest_match(
    sftp: paramiko.SFTPClient, folder: str, pattern: str, watchdog: Watchdog
) -> paramiko.SFTPAttributes | None:
    """The newest regular file in `folder` matching `pattern`: by modification time, then
    name, its numbers as numbers (common.globs.delivery_order), as a drop folder's."""
    newest, newest_order = None, None
    for entry in _listing(sftp, folder, watchdog):
        if not (globs.matches(entry.filename, pattern) and stat.S_ISREG(entry.st_mode or 0)):
            continue
        order = (entry.st_mtime or 0, globs.delivery_order(entry.filename))
        if newest_order is None or order > newest_order:
            newest, newest_order = entry, order
    return newest


def _listing(
    sftp: paramiko.SFTPClient, folder: str, watchdog: Watchdog
) -> Iterator[paramiko.SFTPAttributes]:
    """The folder's entries, as the server sends them, one READDIR answer at a time, with
    names that are no UTF-8 read as the os module reads them (surrogate escapes): paramiko's
    `listdir_attr` raised on one such name anywhere in the folder, and every run of the import
    failed as "an unexpected error", for a file it never asked for.

    Past MAX_LISTING_NAMES names or MAX_LISTING_BYTES the run fails for good. The listing's
    bytes count for the watchdog's minimum rate, and a listing the watchdog cut fails with its
    reason: it is no end of the listing, whose newest match would have been an older file."""
    watchdog.doing = f"the listing of {folder}"
    try:
        yield from _entries(sftp, folder, watchdog)
    finally:
        watchdog.doing = DOWNLOAD


def _entries(
    sftp: paramiko.SFTPClient, folder: str, watchdog: Watchdog
) -> Iterator[paramiko.SFTPAttributes]:
    kind, message = sftp._request(paramiko.sftp.CMD_OPENDIR, sftp._adjust_cwd(folder))
    if kind != paramiko.sftp.CMD_HANDLE:
        raise paramiko.SFTPError("Expected handle")
    handle = message.get_binary()
    names = listed = 0
    while True:
        received = 0
        watchdog.begin_wait()
        try:
            kind, message = sftp._request(paramiko.sftp.CMD_READDIR, handle)
            received = len(message.asbytes())
        except EOFError:
            if watchdog.reason:
                raise watchdog.failure() from None
            break  # the end of the listing (SFTP's EOF status)
        finally:
            watchdog.end_wait(received)
        if kind != paramiko.sftp.CMD_NAME:
            raise paramiko.SFTPError("Expected name response")
        listed += received
        if listed > MAX_LISTING_BYTES:
            raise _too_long(folder, f"more than {MAX_LISTING_BYTES:,} bytes of names")
        for _ in range(message.get_int()):
            names += 1
            if names > MAX_LISTING_NAMES:
                raise _too_long(folder, f"more than {MAX_LISTING_NAMES:,} names")
            filename = message.get_string().decode("utf-8", "surrogateescape")
            longname = message.get_string().decode("utf-8", "replace")
            entry = paramiko.SFTPAttributes._from_msg(message, filename, longname)
            if filename not in (".", ".."):
                yield entry
    # Closed here only: a listing that failed leaves with its connection (open_sftp closes it).
    sftp._request(paramiko.sftp.CMD_CLOSE, handle)


def _too_long(folder: str, what: str) -> PermanentImportError:
    return PermanentImportError(
        f"the SFTP server's listing of {folder} is too long ({what}) to find the newest file "
        f"matching the import's glob: move the files already imported out of the folder, or "
        f"name the file without a glob"
    )


def _validators(path: str, attributes: paramiko.SFTPAttributes) -> Validators:
    """The file's identity for the same-file shortcut: its path, size and mtime."""
    mtime = int(attributes.st_mtime or 0)
    where = hashlib.sha256(path.encode()).hexdigest()[:16]
    return Validators(
        etag=f"sftp:{where}:{attributes.st_size}:{mtime}",
        last_modified=formatdate(mtime, usegmt=True),
    )


def _chunks(
    remote: paramiko.SFTPFile,
    path: str,
    size: int,
    opened: FileVersion,
    watchdog: Watchdog,
    look: Callable[[], FileVersion] | None,
) -> Iterator[bytes]:
    """The file, read WINDOW_REQUESTS requests at a time (pipelined, bounded), then to its end
    (a file that grew since its size was read), which must be the file as `opened` unless
    `look` is None (a preview; tasks.whole_file: one that changed is still being written)."""
    offset = 0
    try:
        while offset < size:
            window = min(size - offset, REQUEST_BYTES * WINDOW_REQUESTS)
            blocks = [
                (start, min(REQUEST_BYTES, offset + window - start))
                for start in range(offset, offset + window, REQUEST_BYTES)
            ]
            for data in remote.readv(blocks):
                if not data:
                    size = offset  # it shrank under the read: the look at its end says so
                    break
                offset += len(data)
                yield data
        remote.seek(offset)
        while data := remote.read(REQUEST_BYTES):
            offset += len(data)
            yield data
        if look is not None:
            check_whole(path, opened, offset, look)
    except (OSError, paramiko.SSHException, EOFError) as error:
        raise _lost(watchdog, "download interrupted", error) from error


def _look(sftp: paramiko.SFTPClient, remote: paramiko.SFTPFile, path: str) -> FileVersion:
    """The open file's state now; the path's on a server that does not answer for an open file
    (SFTP's FSTAT, which some gateways leave out)."""
    try:
        return _version(remote.stat())
    except OSError:
        # Its status comes as a bare IOError; a lost connection fails the second ask too.
        return _version(sftp.stat(path))


def _version(attributes: paramiko.SFTPAttributes) -> FileVersion:
    return FileVersion(size=attributes.st_size or 0, mtime=float(attributes.st_mtime or 0))


def _lost(watchdog: Watchdog, what: str, error: BaseException) -> Exception:
    """A connection that broke: the watchdog's reason when it cut it, else what broke."""
    if watchdog.reason:
        return watchdog.failure()
    lost = TransientImportError(f"{what} ({_reason(error)})")
    lost.unexplained = _words(error) is None
    return lost


def _reason(error: BaseException) -> str:
    """paramiko's or the socket's error in plain words (never a class name nor a repr)."""
    words = _words(error)
    if words is None:
        logger.warning("SFTP failed with an error not described: %s: %s",
                       type(error).__name__, error, exc_info=error)  # fmt: skip
        return "the SSH connection failed; the details are logged"
    return words


def _words(error: BaseException) -> str | None:
    if isinstance(error, socket.timeout | TimeoutError):
        return "the server stopped answering (read timed out)"
    text = str(error).strip()
    if isinstance(error, EOFError) or not text:
        return "the server closed the connection"
    if isinstance(error, OSError) and isinstance(error.strerror, str) and error.strerror:
        return error.strerror.lower()
    if "protocol banner" in text:
        return NOT_SSH
    if found := ERRNO_TEXT.search(text):
        return found.group(1).strip().lower()
    # paramiko's messages are sentences ("Error reading SSH protocol banner"); some carry a
    # repr or a class name, which no user should read.
    first = text.splitlines()[0]
    return first.lower() if plain(first) else None


def _file_error(path: str, error: OSError) -> PermanentImportError | TransientImportError:
    if isinstance(error, FileNotFoundError) or error.errno == 2:
        # A partner's file not uploaded yet: as a drop folder's, worth another attempt.
        return TransientImportError(f"no such file on the SFTP server (yet): {path}")
    if isinstance(error, PermissionError) or error.errno == 13:
        return PermanentImportError(f"the SFTP user may not read {path}")
    if isinstance(error, socket.timeout | TimeoutError):
        return TransientImportError("the SFTP server stopped answering (read timed out)")
    return TransientImportError(f"the SFTP server could not give {path} ({_reason(error)})")
