"""A failed request in plain words, for the run log, Test source and the check before save.

requests' own messages name urllib3's and http.client's classes (`_PinnedHTTPPool(host=...)`,
`BadStatusLine('...')`, `InvalidHeader`): every message a user reads says instead what happened
and, where there is something to do, what to do. A kind of failure not known here gets a plain
sentence too; its class and message go to the worker's log, and to the run's traceback that
only staff read (tasks.runner), never to the message.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl

import requests
import urllib3

from common.error_words import ERRNO_TEXT, chain, os_reason

from .errors import ImportFailed, PermanentImportError

logger = logging.getLogger(__name__)

CREDENTIAL_HEADER = (
    "the credential's header value is not valid in an HTTP header: it must not start or end "
    "with spaces nor contain line breaks or other control characters, and the header name must "
    "be letters, digits and - only; set the import's credential again"
)
NOT_HTTP = (
    "the server's answer was not valid HTTP: check that the URL's host and port are those of a "
    "web server"
)
BAD_ENCODING = (
    "the server said the file was compressed (Content-Encoding) but it could not be "
    "decompressed: the server sends a damaged or mislabelled file"
)
BROKE_OFF = "the connection broke off in the middle of the file"
CLOSED = "the server closed the connection"
BAD_URL = "the address is not a valid URL"
UNEXPLAINED = "the request failed for a reason importbeat cannot name; the details are logged"


def failure(kind: type[ImportFailed], what: str, error: BaseException) -> ImportFailed:
    """`kind("what: <plain words>")` for a failed request, marked `unexplained` when the words
    could not say what happened (the runner then keeps the traceback for staff).

    A body that does not decompress as its Content-Encoding says is permanent whatever `kind`
    the caller expected: it surfaces while the body is read, among the broken connections
    worth a retry, but the server sends the same bytes every time.
    """
    words = _words(error)
    if words == BAD_ENCODING:
        kind = PermanentImportError
    failed = kind(f"{what}: {words or _unexplained(error)}")
    failed.unexplained = words is None
    return failed


def _unexplained(error: BaseException) -> str:
    logger.warning("request failed with an error not described: %s: %s",
                   type(error).__name__, error, exc_info=error)  # fmt: skip
    return UNEXPLAINED


def _words(error: BaseException) -> str | None:
    links = chain(error)

    def has(*kinds: type[BaseException]) -> bool:
        return any(isinstance(link, kinds) for link in links)

    text = " ".join(str(link) for link in links)
    if has(requests.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError) and not has(
        urllib3.exceptions.NewConnectionError
    ):
        return "the connection timed out"
    if has(requests.Timeout, urllib3.exceptions.ReadTimeoutError, socket.timeout, TimeoutError):
        return "the server stopped answering (read timed out)"
    if has(requests.exceptions.InvalidHeader, UnicodeEncodeError):
        # Our own request's header is refused before it is sent: the credential's (the only
        # header a user sets; schedules.credentials refuses such values at save).
        return CREDENTIAL_HEADER
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "its TLS certificate could not be verified"
    if has(requests.exceptions.SSLError, urllib3.exceptions.SSLError, ssl.SSLError):
        return "the TLS handshake failed"
    if has(requests.exceptions.ContentDecodingError, urllib3.exceptions.DecodeError):
        return BAD_ENCODING
    if has(http.client.RemoteDisconnected):
        return CLOSED
    if has(
        urllib3.exceptions.InvalidChunkLength,
        requests.exceptions.ChunkedEncodingError,
        http.client.IncompleteRead,
    ):
        return BROKE_OFF
    if has(http.client.HTTPException, urllib3.exceptions.HeaderParsingError):
        # A status line or headers http.client cannot read (BadStatusLine, LineTooLong, more
        # than 100 headers): not an HTTP server, or a broken one.
        return NOT_HTTP
    if found := ERRNO_TEXT.search(text):
        return found.group(1).strip().lower()
    if has(OSError) and (reason := os_reason(links)):
        return reason
    if has(
        requests.exceptions.InvalidURL,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
        urllib3.exceptions.LocationValueError,
    ):
        return BAD_URL
    if "Connection aborted" in text:
        return CLOSED
    return None
