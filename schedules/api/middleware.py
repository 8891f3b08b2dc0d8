"""Every answer under /api/ is JSON: an unhandled exception is the API's 500, even in DEBUG."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from common import error_words, migrations_state, read_only_database, web_statements
from schedules.fresh_connection import connection_lost
from schedules.text import printable

API_PREFIX = "/api/"
logger = logging.getLogger("django.request")


def server_error() -> JsonResponse:
    return JsonResponse({"detail": "Internal server error."}, status=500)


class JsonErrorsMiddleware:
    """Turns an exception a view under /api/ raised into `{"detail": ...}` with status 500; a
    statement the database ended at the web's timeout (common.web_statements), or a write a
    read-only database refused (common.read_only_database), or a database behind this
    release's migrations (common.migrations_state), into a 503 that says so, on any page.

    DRF answers its own exceptions; anything else (a bug, a database that went away) would be
    Django's HTML error page, or its debug page when DEBUG is on.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        api = request.path.startswith(API_PREFIX)
        if unavailable := _unavailable(exception):
            words, retry_after = unavailable
            # The dashboard's and the admin's pages say it too, rather than a bare 500. The
            # server's reason goes to the log (a password rotated, pg_hba, a database dropped
            # never heal by themselves), not to the client.
            logger.warning(
                "%s: %s (%s)", printable(request.path), words, error_words.log_text(exception)
            )
            retry = {"Retry-After": retry_after}
            if api:
                answer = JsonResponse({"detail": words}, status=503, headers=retry)
            else:
                answer = HttpResponse(
                    f"{words[0].upper()}{words[1:]}.\n", status=503, headers=retry,
                    content_type="text/plain; charset=utf-8",
                )  # fmt: skip
            # Said above, with its reason: Django's own "Service Unavailable: <path>" at ERROR
            # doubled each line (clients hunt: 6,634 such 503s in 40 s at a full server).
            answer._has_been_logged = True  # type: ignore[attr-defined]
            return answer
        if not api:
            return None
        if refused := _refused_request(exception):
            return refused
        # The path escaped, as Django's own lines have it (CVE-2025-48432): `%0a` in a URL is
        # a line break in request.path, which forged a log line of its own (xss hunt).
        logger.error("Internal Server Error: %s", printable(request.path), exc_info=exception)
        return server_error()


def _refused_request(exception: Exception) -> JsonResponse | None:
    """Django's own refusals of a request past its limits, which it answers 400 elsewhere: a
    body larger than DATA_UPLOAD_MAX_MEMORY_SIZE (413 here), more fields than
    DATA_UPLOAD_MAX_NUMBER_FIELDS. Caught here first, they were the API's 500."""
    if isinstance(exception, RequestDataTooBig):
        most = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        words = f"the request's body is larger than the {most:,} bytes the API takes"
        return JsonResponse({"detail": words, "errors": {}}, status=413)
    if isinstance(exception, TooManyFieldsSent):
        most = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        words = f"the request has more than the {most:,} parameters or fields the API takes"
        return JsonResponse({"detail": words, "errors": {}}, status=400)
    return None


# What a request is answered while the database cannot be reached.
DATABASE_AWAY = (
    "the database cannot be reached now, so nothing was read or changed; try again in a moment"
)

# A server that answered and refused the connection for want of a free one: it is there, and
# busy, not away (clients hunt: said "cannot be reached", the operator looked for an outage).
DATABASE_FULL = (
    "the database has no free connection now (it is at its connection limit), so nothing was "
    "read or changed; try again in a moment"
)


def _unavailable(exception: Exception) -> tuple[str, str] | None:
    """The words and Retry-After of a 503 for a database that cannot serve the request now: a
    statement ended at the web's timeout, a write refused by a standby or a read-only server,
    or a server that refused the connection or dropped it (restarting, failing over, at its
    max_connections), or a schema behind this release (web started before `migrate`): that
    was the API's bare 500, said as a bug."""
    if words := web_statements.timed_out(exception):
        return words, "5"
    if words := migrations_state.behind(exception):
        return words, "30"
    if connection_lost(exception):
        connection.close()
        if error_words.out_of_connections(exception):
            return DATABASE_FULL, "5"
        return DATABASE_AWAY, "5"
    if read_only_database.refused(exception):
        # The next request asks on a new session: this one may stay read-only when the server
        # takes writes again.
        connection.close()
        return read_only_database.ANSWER, "60"
    return None
