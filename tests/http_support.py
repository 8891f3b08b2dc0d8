"""The tests' local HTTP servers' one difference from the standard library's."""

from __future__ import annotations

import http.server
import sys


class QuietHTTPServer(http.server.ThreadingHTTPServer):
    """A test server that prints no traceback when a client hangs up on purpose (a download
    the run cut short or abandoned): noise in CI's log, not a failure."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)
