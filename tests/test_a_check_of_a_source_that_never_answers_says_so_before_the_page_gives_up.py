"""A check of a source that never answers (or drips its file) ends on its worker after
SOURCE_CHECK_FETCH_SECONDS, well inside the page's wait, and says "the source did not answer
within 12 s"; the check's task cannot hold its worker slot past its own time limits. (Here
within 2 s: the setting shortens the tests, which waited the 12 s out twice.)

Bug (attack hunt): the check's fetch waited up to FETCH_READ_TIMEOUT_SECONDS (60 s) for a
source that took the connection and never answered, holding a worker slot until the task's
soft time limit (25 s), and the page, giving up at 20 s, said "no worker answered within 20 s;
is a worker running?" while a worker was there.
"""

from __future__ import annotations

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from schedules import source_check
from schedules.models import ScheduledImport
from tasks import fetch
from tasks import source_check as worker_check
from tests.api_support import API, client_for
from tests.conftest import wait_for
from tests.silent_sources import SilentServer, check_body, no_checks_in_progress

pytestmark = pytest.mark.django_db(transaction=True)

FETCH_SECONDS = 2
SAID = (
    f"the source did not answer within {FETCH_SECONDS} s, the longest a check waits for it (a run "
    "waits longer)"
)


@pytest.fixture(autouse=True)
def _short_fetch(settings):
    settings.SOURCE_CHECK_FETCH_SECONDS = FETCH_SECONDS


@pytest.fixture
def silent():
    server = SilentServer()
    yield server
    server.close()


@pytest.mark.processes
def test_the_worker_says_the_source_did_not_answer_before_the_page_gives_up(
    alice, silent, processes
):
    # Given a worker
    no_checks_in_progress()
    processes.start("worker", SOURCE_CHECK_FETCH_SECONDS=str(FETCH_SECONDS))
    from project.celery import app

    wait_for(lambda: app.control.ping(timeout=0.5), 60, what="the worker\n" + processes.logs())

    # When alice checks a source that takes the connection and never answers
    answer = client_for(alice).post(f"{API}/imports/check", check_body(silent.url))

    # Then the worker's words reach her, not "no worker answered"
    assert answer.status_code == 200, answer.content
    assert answer.json()["ok"] is False
    assert answer.json()["problems"] == [SAID] == [source_check.out_of_time()]
    # ... and the check's task carries time limits inside the page's wait
    soft_limit, hard_limit = source_check.time_limits()
    assert FETCH_SECONDS < soft_limit < hard_limit < source_check.wait_seconds()


def test_a_source_that_drips_its_file_is_cut_at_the_checks_deadline():
    # Given a source that answers, then sends a byte every half second
    dripping = SilentServer(drip=0.5)
    try:
        # When its start is checked (as the worker does)
        found = worker_check.inspect_source(
            ScheduledImport(source_url=dripping.url, key_column="sku", delimiter=",")
        )
    finally:
        dripping.close()

    # Then the check ends at its deadline, in the same words
    assert found["ok"] is False and found["problems"] == [SAID]


def test_a_check_stopped_by_its_tasks_soft_limit_says_the_same(monkeypatch):
    # Given a fetch stuck where the deadline cannot end it (a connect), ended by the soft limit
    def stuck(*_args, **_kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(fetch, "open_source", stuck)

    # When a source is checked
    found = worker_check.inspect_source(ScheduledImport(source_url="http://127.0.0.1:9/p.csv"))

    # Then it says the source did not answer in time
    assert found["ok"] is False and found["problems"] == [SAID]
