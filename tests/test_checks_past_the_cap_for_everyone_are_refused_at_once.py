"""Checks of a source past SOURCE_CHECKS_AT_ONCE_IN_ALL (everyone's together), or past half of
a web process's threads, are refused at once (429 with Retry-After), so that checks never hold
every thread of the web.

Bug (attack hunt): checks in progress had no count; a burst of them held every web thread 20 s
each, and everyone's requests (the health check's too) waited behind them. gunicorn's threaded
worker takes a request even while its threads are busy, so checks that filled one process's
threads held up the requests it took, whatever the count across processes.
"""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from schedules import check_slots, source_check
from tests.api_support import API, client_for
from tests.silent_sources import check_body, held_by, no_checks_in_progress

pytestmark = pytest.mark.django_db(transaction=True)

SOURCE = "http://127.0.0.1:9/products.csv"


@pytest.fixture(autouse=True)
def _checks_answer_at_once(monkeypatch):
    # What the worker answers is not the point here: the slots are.
    monkeypatch.setattr(
        source_check, "_ask", lambda *_args: source_check.SourceCheck(ok=True, columns=["sku"])
    )
    no_checks_in_progress()


def test_a_check_past_everyones_cap_is_refused_at_once(alice, bob, settings):
    # Given everyone's cap of 2, both in progress (alice's)
    settings.SOURCE_CHECKS_AT_ONCE = 2
    settings.SOURCE_CHECKS_AT_ONCE_IN_ALL = 2
    settings.WEB_THREADS = 8
    with ExitStack() as alices:
        for _ in range(2):
            alices.enter_context(check_slots.held(alice.pk, source_check.wait_seconds()))

        # When bob checks a source
        refused = client_for(bob).post(f"{API}/imports/check", check_body(SOURCE))
        held = held_by(bob.pk), held_by()

    # Then he is refused at once, in words, with when to try again; nothing of his is held
    assert refused.status_code == 429, refused.content
    retry_after = int(refused.headers["Retry-After"])
    assert retry_after in (source_check.wait_seconds() - 1, source_check.wait_seconds())
    assert refused.json() == {
        "detail": "2 source checks are in progress, as many as importbeat takes at once: try "
        f"again in {retry_after} s."
    }
    assert held == (0, 2)
    # ... and once alice's end, his check goes
    goes = client_for(bob).post(f"{API}/imports/check", check_body(SOURCE))
    assert goes.status_code == 200 and goes.json()["ok"], goes.content


def test_a_web_process_keeps_half_its_threads_from_checks(alice, bob, settings):
    # Given a web process of 4 threads, two of them waiting on alice's checks, and room in Redis
    settings.SOURCE_CHECKS_AT_ONCE = 4
    settings.SOURCE_CHECKS_AT_ONCE_IN_ALL = 16
    settings.WEB_THREADS = 4
    with ExitStack() as alices:
        for _ in range(2):
            alices.enter_context(check_slots.held(alice.pk, source_check.wait_seconds()))

        # When bob checks a source in that process
        refused = client_for(bob).post(f"{API}/imports/check", check_body(SOURCE))

    # Then he is refused at once: the other two threads stay for everyone else's requests
    assert refused.status_code == 429, refused.content
    assert refused.json()["detail"].startswith(
        "2 source checks are in progress on this web process, as many as it takes at once: try "
        "again in "
    )
    assert held_by() == 0
    goes = client_for(bob).post(f"{API}/imports/check", check_body(SOURCE))
    assert goes.status_code == 200, goes.content
