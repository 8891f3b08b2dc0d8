"""No log line is forged by a line break a user or a client chose (xss hunt).

A drop folder's delivery is named by whoever drops the file, and a name may hold a line break
(POSIX allows any byte but `/` and NUL; the glob's `*` matches it): the worker logged it as it
was, so `products_0\n2026-12-07 00:00:00,000 ERROR ...csv` forged a whole log line (every other
file name in the log is written with repr). And the web's own error lines wrote `request.path`
raw, where Django decodes `%0a` to a line break (Django's own lines escape it since 5.2.2,
CVE-2025-48432): a client with no sign-in could forge lines through a path that erred.
"""

from __future__ import annotations

import logging
import time

import psycopg
import pytest
from django.test import RequestFactory

from common import web_statements
from schedules.api.middleware import JsonErrorsMiddleware
from tasks import deliveries
from tests.drop_support import put
from tests.factories import make_import
from tests.importer_support import run_now

FORGED = "2026-12-07 00:00:00,000 ERROR importbeat.security forged line"
PATH = "/api/v1/imports/%0a" + FORGED.replace(" ", "%20")


def forged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"\n{FORGED}" in r.getMessage()]


@pytest.mark.django_db(transaction=True)
def test_a_delivery_named_with_a_line_break_forges_no_log_line(alice, drop, caplog):
    # Given a queue imported once, and a delivery waiting whose name holds a line break
    now = time.time()
    put(drop / "products_1.csv", "sku,name\nA-1,Anvil\n", mtime=now - 120)
    imp = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)
    ended = run_now(imp)
    assert ended.status == "succeeded"
    put(drop / f"products_0\n{FORGED}.csv", "sku,name\nA-1,Anvil\n", mtime=now - 180)

    # When the worker queues the next delivery, and that run runs
    with caplog.at_level(logging.INFO):
        queued = deliveries.queue_next(ended)
        assert queued is not None
        run_now(imp)

    # Then no log line holds a line break that would start a line of its own
    assert forged(caplog) == []
    # (and the name is still said, escaped)
    assert "products_0\\n2026-12-07" in caplog.text


def middleware() -> JsonErrorsMiddleware:
    return JsonErrorsMiddleware(lambda request: None)


def test_an_api_error_on_a_path_with_a_line_break_forges_no_log_line(caplog):
    request = RequestFactory().get(PATH)
    assert "\n" in request.path  # what Django hands the view

    with caplog.at_level(logging.ERROR):
        answer = middleware().process_exception(request, RuntimeError("a bug"))

    assert answer.status_code == 500
    assert forged(caplog) == []


def test_a_page_answered_503_on_a_path_with_a_line_break_forges_no_log_line(caplog, monkeypatch):
    # A statement the database ended at the web's timeout (or a database away: any page whose
    # view reads it); the dataset's name is a free segment of the route
    monkeypatch.setattr(web_statements, "_limit_ms", 5000)
    request = RequestFactory().get(
        "/api/v1/datasets/prices%0a" + FORGED.replace(" ", "%20") + "/records/"
    )

    with caplog.at_level(logging.WARNING):
        answer = middleware().process_exception(
            request, psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
        )

    assert answer.status_code == 503
    assert forged(caplog) == []
