"""A request body sent in chunks (`Transfer-Encoding: chunked`, no `Content-Length`) is read.

Go's net/http with a body of unknown length, Node's fetch with a stream, `requests` given a
generator: gunicorn decodes such a body, but Django reads a request without a Content-Length as
one without a body. A `PATCH` of an import's schedule answered 200 and changed nothing, a `POST`
was told "This field is required." of fields it sent. The body is read here first, up to
DATA_UPLOAD_MAX_MEMORY_SIZE (past it, the 413 the API answers any body too large), and handed
on with its length.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def read_in_chunks(app: WsgiApp) -> WsgiApp:
    """`app`, handed a chunked request's body whole, with its Content-Length."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if _chunked(environ):
            most = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            body = environ["wsgi.input"].read(-1 if most is None else most + 1)
            if most is not None and len(body) > most:
                return _too_large(environ, start_response, most)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return app(environ, start_response)

    return application


def _chunked(environ: dict[str, Any]) -> bool:
    encoding = environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    return not environ.get("CONTENT_LENGTH") and "chunked" in encoding


def _too_large(
    environ: dict[str, Any], start_response: Callable[..., Any], most: int
) -> Iterable[bytes]:
    words = f"the request's body is larger than the {most:,} bytes the API takes"
    if environ.get("PATH_INFO", "").startswith("/api/"):
        body, kind = json.dumps({"detail": words, "errors": {}}).encode(), "application/json"
    else:
        body, kind = f"{words[0].upper()}{words[1:]}.\n".encode(), "text/plain; charset=utf-8"
    start_response(
        "413 Request Entity Too Large",
        [("Content-Type", kind), ("Content-Length", str(len(body))), ("Connection", "close")],
    )
    return [body]
