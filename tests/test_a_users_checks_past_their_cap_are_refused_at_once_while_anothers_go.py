"""A user's checks of a source past SOURCE_CHECKS_AT_ONCE are refused at once (429 with
Retry-After, the admin's Test source in the same words), on every path a check takes, while
another user's check still goes.

Bug (attack hunt): a check's only limit was a rate (30 a minute per user), not how many were in
progress. Bob's burst of checks of a source that took the connection and never answered held
every thread of the web 20 s each, alice's requests waited behind them, and the checks took
every worker slot.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from schedules import source_check
from tests.api_support import API, client_for
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.silent_sources import SilentServer, check_body, held_by, no_checks_in_progress

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

BOBS = "2 source checks of yours are in progress: wait for one to end"


def test_bobs_third_check_is_refused_at_once_while_alices_goes(
    alice, bob, csv_server, processes, settings
):
    # Given a worker with a slot left for alice, and two of bob's checks of a source that never
    # answers in progress
    settings.SOURCE_CHECKS_AT_ONCE = 2
    settings.SOURCE_CHECKS_AT_ONCE_IN_ALL = 8
    settings.WEB_THREADS = 8  # (this one process serves every request of the test)
    no_checks_in_progress()
    good = csv_server.serve("/p.csv", PRODUCTS_CSV)
    silent = SilentServer()
    processes.start("worker", WORKER_CONCURRENCY="3")
    from project.celery import app

    wait_for(lambda: app.control.ping(timeout=0.5), 60, what="the worker\n" + processes.logs())
    bobs, alices = client_for(bob), client_for(alice)
    answered: list = []

    def bobs_check() -> None:
        try:
            answered.append(client_for(bob).post(f"{API}/imports/check", check_body(silent.url)))
        finally:
            connection.close()

    waiting = [threading.Thread(target=bobs_check) for _ in range(2)]
    for thread in waiting:
        thread.start()
    wait_for(lambda: held_by(bob.pk) == 2, 30, what="bob's two checks in progress")

    # When bob checks a third time, by each path a check takes
    third = bobs.post(f"{API}/imports/check", check_body(good))
    dry_create = bobs.post(f"{API}/imports/?dry_run=true", check_body(good))
    imp = make_import(bob, good)
    dry_update = bobs.patch(f"{API}/imports/{imp.pk}/?dry_run=true", {"delimiter": ","})
    test_source = source_check.check_source(imp, by=bob.pk)
    still_waiting = [thread.is_alive() for thread in waiting]
    # ... and alice checks her source
    alices_check = alices.post(f"{API}/imports/check", check_body(good))

    # Then bob is refused at once, in words, with when to try again; his two checks still wait
    for refused in (third, dry_create, dry_update):
        assert refused.status_code == 429, refused.content
        assert refused.json() == {"detail": f"{BOBS}."}
        assert 1 <= int(refused.headers["Retry-After"]) <= source_check.wait_seconds()
    assert test_source.summary() == f"Test source: {BOBS}"
    assert still_waiting == [True, True]
    # ... while alice's check goes
    assert alices_check.status_code == 200, alices_check.content
    assert alices_check.json()["ok"] and alices_check.json()["columns"] == ["sku", "name", "price"]

    # And once bob's checks end (the worker says why), his slots are free and he checks again
    for thread in waiting:
        thread.join(source_check.wait_seconds() + 5)
    silent.close()
    assert [answer.json()["problems"] for answer in answered] == [[source_check.out_of_time()]] * 2
    assert held_by(bob.pk) == 0 and held_by() == 0
    again = bobs.post(f"{API}/imports/check", check_body(good, name="products again"))
    assert again.status_code == 200 and again.json()["ok"], again.content
