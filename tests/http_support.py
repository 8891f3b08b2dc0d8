"""The tests' local HTTP servers' one difference from the standard library's."""

from __future__ import annotations

import http.server
import socket
import sys
import threading


class QuietHTTPServer(http.server.ThreadingHTTPServer):
    """A test server that prints no traceback when a client hangs up on purpose (a download
    the run cut short or abandoned): noise in CI's log, not a failure."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def serve_forever(self, poll_interval: float = 0.05) -> None:
        # shutdown() waits for the loop's next look at its flag: every 0.5 s by default, some
        # 0.25 s at the end of each test that served a file.
        super().serve_forever(poll_interval)


class RawServer:
    """Answers every request with the same bytes, whatever they are, then hangs up."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/p.csv"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                connection.sendall(self.answer)
