"""One user's burst of source checks leaves the web process answering everyone else.

Bug (attack hunt): `POST /imports/check` (and `?dry_run=true`) held a web thread while a worker
fetched the source, up to SOURCE_CHECK_WAIT_SECONDS (20 s), and its only limit was a
rate (30 a minute per user), not how many were in progress at once. Bob, an ordinary user, sent
16 checks at once of a source that took the connection and never answered: every thread of the
Procfile's web (2 workers x 4 threads) waited 20 s on them, alice's `GET /me` (and the load
balancer's health check) got no answer within 5 s, and 12 of bob's checks said "no worker
answered" while his first ones held both worker slots. Now two of his checks go (each ends
after SOURCE_CHECK_FETCH_SECONDS, in the worker's words) and the others are refused at once.
"""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
import requests
from knox.models import AuthToken

from project.devservices import free_port
from schedules import source_check
from tests.conftest import answers, wait_for
from tests.silent_sources import SilentServer, check_body, no_checks_in_progress

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

BURST = 16  # within bob's budget of 30 checks a minute


def test_bobs_burst_of_checks_leaves_alices_requests_answered(alice, bob, processes):
    # Given the Procfile's web (its default workers and threads, the default caps) and a worker
    no_checks_in_progress()
    _, alice_token = AuthToken.objects.create(user=alice, expiry=None)
    _, bob_token = AuthToken.objects.create(user=bob, expiry=None)
    port = free_port()
    processes.start("web", PORT=str(port))
    processes.start("worker")
    base = f"http://127.0.0.1:{port}/api/v1"
    wait_for(lambda: answers(f"{base}/health"), 30, what="the web process")
    for token in (alice_token, bob_token):  # both signed in and answered once
        me = requests.get(f"{base}/me", headers={"Authorization": f"Token {token}"}, timeout=10)
        assert me.status_code == 200, me.text
    silent = SilentServer()
    bobs: list[requests.Response] = []

    # When bob sends a burst of checks of a source that never answers
    def bobs_check() -> None:
        with contextlib.suppress(requests.RequestException):
            bobs.append(
                requests.post(
                    f"{base}/imports/check",
                    json=check_body(silent.url),
                    headers={"Authorization": f"Token {bob_token}"},
                    timeout=60,
                )
            )

    burst = [threading.Thread(target=bobs_check, daemon=True) for _ in range(BURST)]
    for thread in burst:
        thread.start()
    # (until all but the two checks a user may have in progress were answered: the burst is
    # all in; 3 s at most, which a web holding a thread for each check of the burst takes)
    deadline = time.monotonic() + 3
    while len(bobs) < BURST - 2 and time.monotonic() < deadline:
        time.sleep(0.1)

    # Then alice's request is still answered at once
    started = time.monotonic()
    try:
        mine = requests.get(
            f"{base}/me", headers={"Authorization": f"Token {alice_token}"}, timeout=5
        )
        status = mine.status_code
    except requests.Timeout:
        status = None
    waited = time.monotonic() - started
    for thread in burst:
        thread.join(60)
    silent.close()
    print(f"alice's GET /me answered in {waited:.2f} s")
    assert status == 200, f"alice's GET /me unanswered after {waited:.1f} s behind bob's checks"
    # ... two of bob's checks went and ended in the worker's words; the rest were refused
    assert len(bobs) == BURST
    went = [answer.json()["problems"] for answer in bobs if answer.status_code == 200]
    refused = [answer for answer in bobs if answer.status_code == 429]
    assert went == [[source_check.out_of_time()]] * 2, [a.text for a in bobs]
    assert len(refused) == BURST - 2
    for answer in refused:
        assert int(answer.headers["Retry-After"]) >= 1
        assert answer.json()["detail"].startswith(
            ("2 source checks of yours are in progress", "2 source checks are in progress")
        ), answer.text
