"""Authenticated HTTP sources: the import's credential reaches the server that asks for it, and
only the origin (scheme, host, port) it was saved for: a redirect to another one goes without
it (issue 14)."""

import http.server
import threading
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.factories import PRODUCTS_CSV, make_import
from tests.http_support import QuietHTTPServer
from tests.importer_support import records, run_now

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("encryption_key")]

CREDENTIALS = {
    "basic": (
        {"kind": "basic", "username": "feed", "password": "pa55-w0rd"},
        ("Authorization", "Basic ZmVlZDpwYTU1LXcwcmQ="),
    ),
    "bearer": (
        {"kind": "bearer", "token": "tok-123-secret"},
        ("Authorization", "Bearer tok-123-secret"),
    ),
    "header": (
        {"kind": "header", "name": "X-Api-Key", "value": "key-456-secret"},
        ("X-Api-Key", "key-456-secret"),
    ),
}


class AuthServer:
    """Serves /products.csv to a request carrying `required` (name, value), 401 otherwise;
    /moved redirects to `redirect_to`. Keeps every request's headers."""

    def __init__(self, required: tuple[str, str] | None = None) -> None:
        self.required = required
        self.redirect_to = ""
        self.seen: list[dict[str, str]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.seen.append(dict(self.headers))
                path = urllib.parse.urlsplit(self.path).path
                if path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", server.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                name, value = server.required or ("", "")
                allowed = server.required is None or self.headers.get(name) == value
                body = PRODUCTS_CSV.encode() if allowed else b"who are you?"
                self.send_response(200 if allowed else 401)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[list[AuthServer]]:
    started: list[AuthServer] = []
    yield started
    for server in started:
        server.close()


def _server(servers, required=None) -> AuthServer:
    server = AuthServer(required)
    servers.append(server)
    return server


@pytest.mark.parametrize("kind", CREDENTIALS)
def test_the_credential_reaches_the_server_that_requires_it(alice, servers, kind):
    # Given a server that serves the file only with the credential
    credential, header = CREDENTIALS[kind]
    server = _server(servers, header)
    imp = make_import(alice, server.url("/products.csv"), credential=credential)

    # When the import runs
    run = run_now(imp)

    # Then the server got it and the rows landed
    assert run.status == "succeeded", run.error_message
    assert len(records(imp)) == 3
    assert server.seen[-1][header[0]] == header[1]


def test_without_the_credential_the_run_fails_at_once_saying_so(alice, servers):
    server = _server(servers, CREDENTIALS["bearer"][1])
    imp = make_import(alice, server.url("/products.csv"), max_retries=3)

    run = run_now(imp)

    assert (run.status, run.attempts) == ("failed", 1)
    assert "the server refused access (HTTP 401" in run.error_message


@pytest.mark.parametrize("kind", CREDENTIALS)
def test_a_redirect_to_another_origin_drops_the_credential(alice, servers, kind):
    # Given an import whose server redirects to another server (same host, another port)
    credential, header = CREDENTIALS[kind]
    first, elsewhere = _server(servers), _server(servers)
    first.redirect_to = elsewhere.url("/products.csv")
    imp = make_import(alice, first.url("/moved"), credential=credential)

    # When it runs
    run = run_now(imp)

    # Then the first server got the credential, the other one did not
    assert run.status == "succeeded", run.error_message
    assert first.seen[0][header[0]] == header[1]
    assert [header[0] in seen for seen in elsewhere.seen] == [False]
    assert not any(header[1] in str(seen) for seen in elsewhere.seen)


def test_a_redirect_on_the_same_origin_keeps_the_credential(alice, servers):
    credential, header = CREDENTIALS["bearer"]
    server = _server(servers, header)
    server.redirect_to = server.url("/products.csv")
    imp = make_import(alice, server.url("/moved"), credential=credential)

    run = run_now(imp)

    assert run.status == "succeeded", run.error_message
    assert [seen.get("Authorization") for seen in server.seen] == [header[1], header[1]]
