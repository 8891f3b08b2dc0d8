"""Download a source file as a stream of bytes, with timeouts, a size cap and error classes."""

from __future__ import annotations

import io
import ipaddress
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings

from .errors import PermanentImportError, TransientImportError

CHUNK_BYTES = 256 * 1024
MAX_REDIRECTS = 5
USER_AGENT = "importbeat/1.0"


class ByteStream(io.RawIOBase):
    """A readable file over a response's chunks that counts bytes and enforces the size cap."""

    def __init__(
        self,
        chunks: Iterator[bytes],
        max_bytes: int,
        on_read: Callable[[int], None] | None = None,
    ) -> None:
        self._chunks = chunks
        self._pending = b""
        self.bytes_read = 0
        self.max_bytes = max_bytes
        self.on_read = on_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
            except (requests.ConnectionError, requests.Timeout) as error:
                raise TransientImportError(f"download interrupted: {error}") from error
            except requests.RequestException as error:
                raise TransientImportError(f"download failed: {error}") from error
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


def check_public_address(url: str) -> None:
    """Refuse URLs whose host resolves to a loopback, private, link-local or reserved address.

    Hosts listed in ALLOWED_PRIVATE_HOSTS (by name or by address) are exempt.
    """
    host = urlsplit(url).hostname or ""
    allowed = {h.strip().lower() for h in settings.ALLOWED_PRIVATE_HOSTS if h.strip()}
    if host.lower() in allowed:
        return
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as error:
        raise TransientImportError(f"cannot resolve host {host!r}: {error}") from error
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if str(address) in allowed:
            continue
        if not address.is_global or address.is_multicast:
            raise PermanentImportError(
                f"{host} resolves to {address}, a private address that is not allowed "
                f"(add it to ALLOWED_PRIVATE_HOSTS to permit it)"
            )


def classify_status(response: requests.Response) -> None:
    status = response.status_code
    if status == 429 or status >= 500:
        raise TransientImportError(f"the server answered HTTP {status} {response.reason}")
    if status >= 400:
        raise PermanentImportError(f"the server answered HTTP {status} {response.reason}")


@contextmanager
def open_source(
    url: str, on_read: Callable[[int], None] | None = None
) -> Iterator[tuple[ByteStream, int | None]]:
    """Yield (byte stream, Content-Length or None) for `url`, following redirects by hand so
    that every hop is checked against the private-address rule."""
    timeout = (settings.FETCH_CONNECT_TIMEOUT_SECONDS, settings.FETCH_READ_TIMEOUT_SECONDS)
    with requests.Session() as session:
        session.headers["User-Agent"] = USER_AGENT
        for _hop in range(MAX_REDIRECTS + 1):
            if urlsplit(url).scheme not in ("http", "https"):
                raise PermanentImportError(f"only http and https URLs are allowed: {url}")
            check_public_address(url)
            try:
                response = session.get(url, stream=True, timeout=timeout, allow_redirects=False)
            except (requests.ConnectionError, requests.Timeout) as error:
                raise TransientImportError(f"cannot reach {url}: {error}") from error
            except requests.RequestException as error:
                raise PermanentImportError(f"cannot fetch {url}: {error}") from error
            if response.is_redirect:
                url = urljoin(url, response.headers["Location"])
                response.close()
                continue
            break
        else:
            raise PermanentImportError(f"more than {MAX_REDIRECTS} redirects")
        with response:
            classify_status(response)
            length = response.headers.get("Content-Length")
            chunks = response.iter_content(chunk_size=CHUNK_BYTES)
            yield (
                ByteStream(chunks, settings.MAX_IMPORT_BYTES, on_read),
                int(length) if length and length.isdigit() else None,
            )
