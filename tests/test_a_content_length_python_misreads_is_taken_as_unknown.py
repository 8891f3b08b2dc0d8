"""A Content-Length of digits Python reads as such but int() refuses (`48151623²`: a latin-1
byte 0xB2 after the digits) is a length unknown, not an unexpected error. The server here
repeats the key it was sent in that header: before, Test source and `POST /imports/check`
stopped with `ValueError: invalid literal for int() with base 10: '48151623²'`, the key in
Celery's stored failure, Flower and the logs (tasks/crashes.py now hides such an error)."""

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


def test_a_check_reads_a_file_whose_length_is_not_a_number(alice, csv_server, processes, caplog):
    # Given an import whose server answers with the key it was sent in a broken Content-Length,
    # a worker, and a look at what the result backend stores
    # (closing the connection after the body: a length unknown is read until the close)
    csv_server.routes["/echo.csv"] = lambda: Route(
        b"sku\nA-1\n",
        headers={"Content-Length": csv_server.requests[-1][1]["X-Api-Key"] + "²"},
        cut_after=8,
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

    # Then both checks read the file as one of unknown length and find its column
    assert saved.problems == unsaved.problems == []
    assert saved.columns == unsaved.columns == ["sku"]
    # ... no task failed, and neither the backend, the worker's log nor the web's log line
    # shows the key (the suite's other runners publish their states on the same Redis)
    states = stored_states(stored)
    assert not [state for state in states if "in _stream" in (state["traceback"] or "")]
    log = "\n".join(path.read_text() for path in processes.log_dir.glob("*.log"))
    assert "raised unexpected" not in log
    assert leaks([states, log, caplog.text], forms(KEY)) == []
