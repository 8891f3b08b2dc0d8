"""The stream of bytes every source yields (an http(s) or SFTP download, a drop folder's
file): it counts what it read, enforces the size cap and hears the download's watchdog; and the
validators that name one version of a file, for a conditional fetch.

Its own module, below tasks.fetch, tasks.sftp and tasks.drop_folder, so that the fetcher can
open the other two while they build on this (STYLE rule 15: no two modules import each other).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import requests

from .errors import PermanentImportError, TransientImportError
from .fetch_errors import failure
from .fetch_watchdog import Watchdog

CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class Validators:
    """What the server said identifies this version of the file (for a conditional GET)."""

    etag: str = ""
    last_modified: str = ""

    def request_headers(self) -> dict[str, str]:
        # RFC 9110: a server that knows ETags decides by If-None-Match and ignores the date.
        if self.etag:
            return {"If-None-Match": self.etag}
        if self.last_modified:
            return {"If-Modified-Since": self.last_modified}
        return {}


class NotModified(Exception):
    """The server answered 304: the file is the version the validators named."""


class ByteStream(io.RawIOBase):
    """A readable file over a response's chunks that counts bytes and enforces the size cap."""

    validators = Validators()
    # The file taken, when the source names several (a glob's match); "" for HTTP.
    source_file = ""
    # "gzip" when the server gzipped the body on the way (HTTP Content-Encoding), left to
    # tasks.decompress to decode.
    content_encoding = ""

    def __init__(
        self,
        chunks: Iterator[bytes],
        max_bytes: int,
        on_read: Callable[[int], None] | None = None,
        watchdog: Watchdog | None = None,
    ) -> None:
        self._chunks = chunks
        self._watchdog = watchdog
        self._pending = b""
        self.bytes_read = 0
        self.max_bytes = max_bytes
        self.on_read = on_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self._pending:
            self._pending = self._next_chunk()
            if not self._pending:
                return 0
            self.bytes_read += len(self._pending)
            if self.bytes_read > self.max_bytes:
                raise PermanentImportError(
                    f"the file is larger than the {self.max_bytes}-byte limit (MAX_IMPORT_BYTES)"
                )
            if self.on_read:
                self.on_read(self.bytes_read)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def _next_chunk(self) -> bytes:
        """The next chunk of the body, b"" at its end; a watchdog's verdict comes first."""
        watchdog = self._watchdog
        if watchdog is not None:
            watchdog.begin_wait()
        chunk = b""
        try:
            chunk = next(self._chunks, b"")
        except (requests.ConnectionError, requests.Timeout) as error:
            self._stop_if_stopped(watchdog, error)
            raise failure(TransientImportError, "download interrupted", error) from error
        except requests.RequestException as error:
            self._stop_if_stopped(watchdog, error)
            raise failure(TransientImportError, "download failed", error) from error
        if watchdog is not None:
            watchdog.end_wait(len(chunk))
            # A socket the watchdog shut down may read as a clean end of file: never take
            # that for the whole file.
            self._stop_if_stopped(watchdog)
            if not chunk:
                watchdog.stop()
        return chunk

    @staticmethod
    def _stop_if_stopped(watchdog: Watchdog | None, error: Exception | None = None) -> None:
        if watchdog is not None and watchdog.reason:
            raise watchdog.failure() from error
