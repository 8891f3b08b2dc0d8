"""A source check that stops on an unexpected error quoting the server's answer keeps the import's
credential out of what Celery stores (the result backend, Flower) and logs of it, and out of the
web's log line about it. The server here repeats the key it was sent as its Content-Length,
after a digit Python reads as one but int() refuses: Celery kept, and Flower showed,
`ValueError: invalid literal for int() with base 10: '48151623²'`."""

from __future__ import annotations

import logging

import pytest

from schedules import source_check
from tests.conftest import Route, wait_for
from tests.echo_support import forms, leaks, stored_states, watch_results
from tests.factories import make_import
from tests.sftp_support import TEST_ENCRYPTION_KEY

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.usefixtures("encryption_key"),
]

KEY = "48151623"
CREDENTIAL = {"kind": "header", "name": "X-Api-Key", "value": KEY}


def test_a_check_that_crashes_on_the_servers_answer_stores_and_logs_it_hidden(
    alice, csv_server, processes, caplog
):
    # Given an import whose server answers with the key it was sent in a broken Content-Length,
    # a worker, and a look at what the result backend stores
    csv_server.routes["/echo.csv"] = lambda: Route(
        b"sku\nA-1\n", headers={"Content-Length": csv_server.requests[-1][1]["X-Api-Key"] + "²"}
    )
    imp = make_import(alice, csv_server.base_url + "/echo.csv", credential=CREDENTIAL)
    stored = watch_results()
    processes.start("worker", IMPORTBEAT_ENCRYPTION_KEY=TEST_ENCRYPTION_KEY)
    from project.celery import app

    wait_for(lambda: app.control.ping(timeout=0.5), 30, what="the worker\n" + processes.logs())
    caplog.set_level(logging.WARNING, logger="schedules.source_check")

    # When its source is checked, saved (Test source) and with its fields (POST /imports/check)
    saved = source_check.check_source(imp)
    unsaved = source_check.check_unsaved(imp)

    # Then both checks say in plain words that they stopped
    assert saved.problems == unsaved.problems == [source_check.WORKER_FAILED]
    # ... each task's stored failure names the error and where it happened, the key hidden
    # (the suite's other runners publish their states on the same Redis)
    states = stored_states(stored)
    failures = [state for state in states if "in _stream" in (state["traceback"] or "")]
    assert len(failures) == 2
    for failure in failures:
        assert failure["status"] == "FAILURE"
        assert failure["result"]["exc_type"] == "TaskCrashed"
        assert "invalid literal for int() with base 10: '[hidden]²'" in failure["traceback"]
    # ... and neither the backend, the worker's log nor the web's log line shows the key
    log = "\n".join(path.read_text() for path in processes.log_dir.glob("*.log"))
    assert "raised unexpected: TaskCrashed" in log
    assert leaks([states, log, caplog.text], forms(KEY)) == []
