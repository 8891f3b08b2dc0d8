"""Open a source file as a stream of bytes, with timeouts, a size cap and error classes: an
http(s) download here, a drop folder's file in tasks.drop_folder, either decompressed by
tasks.decompress."""

from __future__ import annotations

import contextvars
import email.utils
import io
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.response import HTTPResponse

from schedules.credentials import basic_pair, origin
from schedules.text import quoted

from . import decompress, drop_folder
from .addresses import check_public_address, public_addresses
from .byte_stream import CHUNK_BYTES, ByteStream, NotModified, Validators
from .errors import PermanentImportError, TransientImportError
from .fetch_errors import BAD_ENCODING, failure
from .fetch_watchdog import Watchdog
from .source_options import SourceOptions
from .transcode import Transcoded
from .whole_file import FileVersion, quiet_version, unsettled_for

MAX_REDIRECTS = 5
USER_AGENT = "importbeat/1.0"
# The watchdog of the download in progress in this context: connections register with it.
_watchdog: contextvars.ContextVar[Watchdog | None] = contextvars.ContextVar(
    "importbeat_fetch_watchdog", default=None
)


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


def _validator(value: str) -> str:
    return "" if "\x00" in value else value[:255]


def classify_status(response: requests.Response) -> None:
    status = response.status_code
    # The server's words, as text: a NUL in them crashed the run as it was written.
    reason = quoted(response.reason or "")
    if status == 429 or status >= 500:
        raise TransientImportError(f"the server answered HTTP {status} {reason}")
    if status in (401, 403):
        raise PermanentImportError(
            f"the server refused access (HTTP {status} {reason}): check the import's credential"
        )
    if status >= 300:
        # 4xx, and a 3xx that is no redirect (300, or 304 to a request that was not
        # conditional): nothing to import, and asking again will not change that.
        raise PermanentImportError(f"the server answered HTTP {status} {reason}")


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
            opened = drop_folder.open_file(url, on_read, unless, options)
        else:
            opened = _download(url, on_read, unless, options)
        stream, length = stack.enter_context(opened)
        if getattr(stream, "content_encoding", ""):
            stream = _content_decoded(stream, stack)  # the server's gzip, then the file's own
        text = decompress.decompressed(stream, stack, options.member)
        if options.transcode_from:
            text = Transcoded(text, options.transcode_from)
        yield text, length


def _content_decoded(stream: ByteStream, stack: ExitStack) -> io.RawIOBase:
    """A body the server gzipped on the way, decoded (a stream cut short says so); one that is
    no gzip stream at all is the mislabelled body BAD_ENCODING says (an empty one is empty)."""
    decoded = decompress.decompressed(stream, stack)
    if decoded is not stream and getattr(decoded, "kind", "") != "gzip":
        raise PermanentImportError(f"download interrupted: {BAD_ENCODING}")
    return decoded


@contextmanager
def _download(
    url: str,
    on_read: Callable[[int], None] | None,
    unless: Validators | None,
    options: SourceOptions,
) -> Iterator[tuple[ByteStream, int | None]]:
    """An sftp:// or http(s) download under one watchdog; http(s) redirects are followed by
    hand so that every hop is checked against the private-address rule."""
    deadline, min_rate = settings.FETCH_TOTAL_TIMEOUT_SECONDS, settings.FETCH_MIN_BYTES_PER_SECOND
    with watched(deadline, min_rate, options.stop_if_asked) as watchdog:
        if urlsplit(url).scheme.lower() == "sftp":
            from .sftp import open_sftp

            with open_sftp(url, on_read, unless, options, watchdog) as opened:
                yield opened
            return
        timeout = (settings.FETCH_CONNECT_TIMEOUT_SECONDS, settings.FETCH_READ_TIMEOUT_SECONDS)
        with _session(url, unless, timeout, watchdog, options) as (response, url):
            yield _stream(response, on_read, watchdog)


@contextmanager
def watched(
    deadline: float, min_rate: float = 0.0, stop_if_asked: Callable[[], None] | None = None
) -> Iterator[Watchdog]:
    """A watchdog (tasks.fetch_watchdog) over the connections this context opens through the
    pinned adapters: the fetcher's downloads, and the webhooks' POSTs."""
    watchdog = Watchdog(deadline, min_rate, stop_if_asked).start()
    token = _watchdog.set(watchdog)
    try:
        yield watchdog
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
        # gzip alone, which our own reader decodes and checks whole (_stream): urllib3 took a
        # deflate body cut short for the whole file, and mode sync deleted the rows after it.
        session.headers["Accept-Encoding"] = "gzip"
        session.headers.update(unless.request_headers() if unless else {})
        session.mount("http://", GuardedAdapter())
        session.mount("https://", GuardedAdapter())
        response, url = _final_response(session, url, timeout, watchdog, options)
        if options.whole and response.status_code == 200:
            response = _once_quiet(response, url, timeout, watchdog, options, session)
        with response:
            if response.status_code == 304 and unless and unless.request_headers():
                # (A 304 to a request that named no version is no answer: classify_status.)
                raise NotModified
            classify_status(response)
            yield response, url


def _final_response(
    session: requests.Session,
    url: str,
    timeout: tuple[float, float],
    watchdog: Watchdog,
    options: SourceOptions,
) -> tuple[requests.Response, str]:
    """The response at the end of `url`'s redirects, each hop checked, and its URL."""
    for _hop in range(MAX_REDIRECTS + 1):
        if urlsplit(url).scheme not in ("http", "https"):
            raise PermanentImportError(f"only http and https URLs are allowed: {url}")
        check_public_address(url)
        watchdog.begin_asking()
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
                raise watchdog.failure() from error
            raise failure(TransientImportError, f"cannot reach {url}", error) from error
        except (requests.RequestException, UnicodeError) as error:
            # UnicodeError: a header value http.client cannot encode (the credential's).
            raise failure(PermanentImportError, f"cannot fetch {url}", error) from error
        finally:
            watchdog.end_asking()
        if response.is_redirect:
            url = urljoin(url, response.headers["Location"])
            response.close()
            continue
        return response, url
    raise PermanentImportError(f"more than {MAX_REDIRECTS} redirects")


def _once_quiet(
    response: requests.Response,
    url: str,
    timeout: tuple[float, float],
    watchdog: Watchdog,
    options: SourceOptions,
    session: requests.Session,
) -> requests.Response:
    """The response for a file that has been quiet for FILE_SETTLE_SECONDS (tasks.whole_file):
    a web server serving a file written in place sends what is there now, with a length and a
    `Last-Modified` that look whole. One modified less than that ago, by the server's own
    clock (`Date`), is asked for again when the time is up, and must be the same version."""
    first, server_time = _version(response), _server_time(response)
    if first is None or not unsettled_for(first, server_time):
        return response  # quiet, or no modification time: a page made for each request
    response.close()  # the server's connection is not held through the wait
    again: list[requests.Response] = []

    def look_again() -> FileVersion:
        again.append(_final_response(session, url, timeout, watchdog, options)[0])
        return _version(again[-1]) or FileVersion(-1, 0.0)

    try:
        quiet_version(url, look_again, first, server_time, watchdog.stop_if_asked)
    except Exception:
        for opened in again:
            opened.close()
        raise
    return again[-1]


def _version(response: requests.Response) -> FileVersion | None:
    modified = _http_date(response.headers.get("Last-Modified"))
    if modified is None:
        return None
    length = response.headers.get("Content-Length", "")
    size = int(length) if length.isascii() and length.isdigit() else -1
    return FileVersion(size, modified, response.headers.get("ETag", ""))


def _server_time(response: requests.Response) -> float | None:
    return _http_date(response.headers.get("Date"))


def _http_date(value: str | None) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() if value else None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _stream(
    response: requests.Response, on_read: Callable[[int], None] | None, watchdog: Watchdog
) -> tuple[ByteStream, int | None]:
    length = response.headers.get("Content-Length")
    # A body the server gzipped on the way (Content-Encoding) is decoded by our own reader
    # (tasks.decompress), as a .gz file is: urllib3's decoder took a gzip stream cut short for
    # the whole body (the rows after the cut were gone, and with mode sync deleted), and
    # progress counted decoded bytes against the encoded length (474 %).
    coding = response.headers.get("Content-Encoding", "").strip().lower()
    codings = [part.strip() for part in coding.split(",") if part.strip() != "identity"]
    gzipped = len(codings) == 1 and codings[0] in GZIP_CODINGS
    if not gzipped and any(
        part in COMPRESSIONS or part in HTTPResponse.CONTENT_DECODERS for part in codings
    ):
        raise PermanentImportError(
            f"the server sent the file in an encoding importbeat did not ask for "
            f"(Content-Encoding: {quoted(coding)}; it asks for gzip or none): it cannot tell "
            "whether such a body arrived whole"
        )
    # Any other coding is no compression anybody applies ("utf-8", "binary", "none": a common
    # misconfiguration, an object store's metadata): the body is read as sent, its length
    # checked as a plain one's. Refused, such a file failed every run.
    stream = ByteStream(
        _chunks(response, decode=not gzipped), settings.MAX_IMPORT_BYTES, on_read, watchdog
    )
    stream.content_encoding = "gzip" if gzipped else ""
    stream.validators = Validators(
        # Stored, and sent back as the next request's validators, as the server sent them;
        # one holding a NUL (which PostgreSQL's text cannot hold: every run's end failed, its
        # rows rolled back) is not kept, and the next run asks unconditionally.
        etag=_validator(response.headers.get("ETag", "")),
        last_modified=_validator(response.headers.get("Last-Modified", "")),
    )
    # isdigit() alone takes digits int() refuses ('12²', a latin-1 byte 0xB2): such a length
    # is as good as none, not an unexpected error.
    known = length is not None and length.isascii() and length.isdigit()
    return stream, int(length) if known else None


GZIP_CODINGS = ("gzip", "x-gzip")
# The codings registered with IANA that compress or encrypt a body, whatever the HTTP client
# decodes (urllib3 decodes br and zstd only with optional packages: a brotli body was read as
# the CSV, "not valid utf-8; set the import's encoding").
COMPRESSIONS = frozenset(
    {"deflate", "br", "zstd", "compress", "x-compress", "pack200-gzip", "exi", "aes128gcm",
     "dcb", "dcz"}
)  # fmt: skip


def _chunks(response: requests.Response, decode: bool = True) -> Iterator[bytes]:
    """The body as it arrives: whatever one read from the socket gave (at most CHUNK_BYTES).

    Not `iter_content`, which waits for a whole chunk: a trickle would show no progress, and
    the watchdog would see no bytes, until 256 KiB had dripped in.
    """
    raw = response.raw
    while True:
        try:
            data = raw.read1(CHUNK_BYTES, decode_content=decode)
        except urllib3.exceptions.ReadTimeoutError as error:
            raise requests.Timeout(error) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise requests.ConnectionError(error) from error
        if not data:
            return
        yield data
