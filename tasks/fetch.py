"""Open a source file as a stream of bytes, with timeouts, a size cap and error classes: an
http(s) download here, a drop folder's file in tasks.drop_folder, either decompressed by
tasks.decompress."""

from __future__ import annotations

import contextvars
import io
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from django.conf import settings
from requests.adapters import HTTPAdapter

from schedules.credentials import basic_pair, origin

from . import decompress
from .addresses import check_public_address, public_addresses
from .errors import PermanentImportError, TransientImportError
from .fetch_errors import failure
from .fetch_watchdog import Watchdog
from .source_options import SourceOptions

CHUNK_BYTES = 256 * 1024
MAX_REDIRECTS = 5
USER_AGENT = "importbeat/1.0"
# The watchdog of the download in progress in this context: connections register with it.
_watchdog: contextvars.ContextVar[Watchdog | None] = contextvars.ContextVar(
    "importbeat_fetch_watchdog", default=None
)


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
    # The file taken, when the source names several (a glob's newest match); "" for HTTP.
    source_file = ""

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
            raise TransientImportError(watchdog.reason) from error


class _PinnedAddress:
    """Connect to an address checked at connect time, not to a second DNS answer.

    Checking the URL first and letting urllib3 resolve the name again would let a DNS server
    answer "public" to the check and "169.254.169.254" to the connection (DNS rebinding).
    TLS still verifies the certificate against the host name: only the socket is pinned.
    """

    def _new_conn(self):
        watchdog = _watchdog.get()
        if watchdog is not None:
            watchdog.connections.append(self)
        addresses = public_addresses(self._dns_host, self.port)
        if addresses is None:
            return super()._new_conn()
        original = self._dns_host
        self._dns_host = addresses[0]
        try:
            return super()._new_conn()
        finally:
            self._dns_host = original


class _PinnedHTTPConnection(_PinnedAddress, urllib3.connection.HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedAddress, urllib3.connection.HTTPSConnection):
    pass


class _PinnedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """requests' adapter with connections that refuse private addresses when they connect."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _PinnedHTTPPool,
            "https": _PinnedHTTPSPool,
        }


def classify_status(response: requests.Response) -> None:
    status = response.status_code
    if status == 429 or status >= 500:
        raise TransientImportError(f"the server answered HTTP {status} {response.reason}")
    if status in (401, 403):
        raise PermanentImportError(
            f"the server refused access (HTTP {status} {response.reason}): "
            f"check the import's credential"
        )
    if status >= 300:
        # 4xx, and a 3xx that is no redirect (300, or 304 to a request that was not
        # conditional): nothing to import, and asking again will not change that.
        raise PermanentImportError(f"the server answered HTTP {status} {response.reason}")


@contextmanager
def open_source(
    url: str,
    on_read: Callable[[int], None] | None = None,
    unless: Validators | None = None,
    *,
    options: SourceOptions | None = None,
) -> Iterator[tuple[ByteStream, int | None]]:
    """Yield (byte stream, length or None) for `url`, whatever kind of source it is: a drop
    folder's file (`file:///`, tasks.drop_folder), an SFTP download (tasks.sftp) or an http(s)
    one. The length is that of the file as stored (compressed, if it is), so progress follows
    the bytes that arrive; the stream gives the CSV itself, decompressed, with the size cap on
    what decompression produces.

    With `unless`, the request is conditional: NotModified is raised when the source says the
    file is still the version those validators name. `options` carry the import's credential,
    pinned host key and zip member (tasks.source_options).
    """
    options = options or SourceOptions()
    with ExitStack() as stack:
        if urlsplit(url).scheme.lower() == "file":
            from . import drop_folder  # it builds on this module's ByteStream

            opened = drop_folder.open_file(url, on_read, unless, options)
        else:
            opened = _download(url, on_read, unless, options)
        stream, length = stack.enter_context(opened)
        yield decompress.decompressed(stream, stack, options.member), length


@contextmanager
def _download(
    url: str,
    on_read: Callable[[int], None] | None,
    unless: Validators | None,
    options: SourceOptions,
) -> Iterator[tuple[ByteStream, int | None]]:
    """An sftp:// or http(s) download under one watchdog; http(s) redirects are followed by
    hand so that every hop is checked against the private-address rule."""
    watchdog = Watchdog(
        settings.FETCH_TOTAL_TIMEOUT_SECONDS, settings.FETCH_MIN_BYTES_PER_SECOND
    ).start()
    token = _watchdog.set(watchdog)
    try:
        if urlsplit(url).scheme.lower() == "sftp":
            from .sftp import open_sftp

            with open_sftp(url, on_read, unless, options, watchdog) as opened:
                yield opened
            return
        timeout = (settings.FETCH_CONNECT_TIMEOUT_SECONDS, settings.FETCH_READ_TIMEOUT_SECONDS)
        with _session(url, unless, timeout, watchdog, options) as (response, url):
            yield _stream(response, on_read, watchdog)
    finally:
        watchdog.stop()
        _watchdog.reset(token)


def credential_headers(url: str, options: SourceOptions) -> dict[str, str]:
    """The credential's header for a request to `url`: none unless `url` is on the origin the
    credential was saved for, so a redirect elsewhere (another host, port or scheme) never
    carries it."""
    credential = options.credential
    if not credential or origin(url) != options.credential_origin:
        return {}
    kind = credential["kind"]
    if kind == "basic":
        return {
            "Authorization": "Basic " + basic_pair(credential["username"], credential["password"])
        }
    if kind == "bearer":
        return {"Authorization": f"Bearer {credential['token']}"}
    if kind == "header":
        return {credential["name"]: credential["value"]}
    return {}


@contextmanager
def _session(
    url: str,
    unless: Validators | None,
    timeout: tuple[float, float],
    watchdog: Watchdog,
    options: SourceOptions,
) -> Iterator[tuple[requests.Response, str]]:
    """The final response for `url` (redirects followed and checked), open while in use."""
    with requests.Session() as session:
        # No ~/.netrc nor proxy settings from the worker's environment: the only credential a
        # request carries is the import's own.
        session.trust_env = False
        session.headers["User-Agent"] = USER_AGENT
        session.headers.update(unless.request_headers() if unless else {})
        session.mount("http://", GuardedAdapter())
        session.mount("https://", GuardedAdapter())
        for _hop in range(MAX_REDIRECTS + 1):
            if urlsplit(url).scheme not in ("http", "https"):
                raise PermanentImportError(f"only http and https URLs are allowed: {url}")
            check_public_address(url)
            try:
                response = session.get(
                    url,
                    stream=True,
                    timeout=timeout,
                    allow_redirects=False,
                    headers=credential_headers(url, options),
                )
            except (requests.ConnectionError, requests.Timeout) as error:
                if watchdog.reason:
                    raise TransientImportError(watchdog.reason) from error
                raise failure(TransientImportError, f"cannot reach {url}", error) from error
            except (requests.RequestException, UnicodeError) as error:
                # UnicodeError: a header value http.client cannot encode (the credential's).
                raise failure(PermanentImportError, f"cannot fetch {url}", error) from error
            if response.is_redirect:
                url = urljoin(url, response.headers["Location"])
                response.close()
                continue
            break
        else:
            raise PermanentImportError(f"more than {MAX_REDIRECTS} redirects")
        with response:
            if response.status_code == 304 and unless:
                raise NotModified
            classify_status(response)
            yield response, url


def _stream(
    response: requests.Response, on_read: Callable[[int], None] | None, watchdog: Watchdog
) -> tuple[ByteStream, int | None]:
    length = response.headers.get("Content-Length")
    stream = ByteStream(_chunks(response), settings.MAX_IMPORT_BYTES, on_read, watchdog)
    stream.validators = Validators(
        etag=response.headers.get("ETag", "")[:255],
        last_modified=response.headers.get("Last-Modified", "")[:255],
    )
    return stream, int(length) if length and length.isdigit() else None


def _chunks(response: requests.Response) -> Iterator[bytes]:
    """The body as it arrives: whatever one read from the socket gave (at most CHUNK_BYTES).

    Not `iter_content`, which waits for a whole chunk: a trickle would show no progress, and
    the watchdog would see no bytes, until 256 KiB had dripped in.
    """
    raw = response.raw
    while True:
        try:
            data = raw.read1(CHUNK_BYTES, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError as error:
            raise requests.Timeout(error) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise requests.ConnectionError(error) from error
        if not data:
            return
        yield data
