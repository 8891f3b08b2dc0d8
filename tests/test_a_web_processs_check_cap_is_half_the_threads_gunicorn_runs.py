"""A web process lets half of the threads gunicorn actually runs wait on checks of a source,
whatever WEB_THREADS says; a sync worker's one thread may take one.

Bug (review1): schedules.check_slots took WEB_THREADS for the process's threads. The Procfile
passes the same variable to gunicorn, but a command written by hand (`--threads 8` without it)
capped its checks at half of 4, and `--threads 2` beside WEB_THREADS=4 let checks hold every
thread. gunicorn.conf.py now records `worker.cfg.threads` for the cap.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading

import pytest
import requests
from knox.models import AuthToken

from project.devservices import free_port
from schedules import check_slots
from tests.conftest import BASE_DIR, answers, wait_for
from tests.silent_sources import check_body, held_by, no_checks_in_progress

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_hand_written_gunicorn_caps_checks_at_half_the_threads_it_runs(bob, processes):
    # Given gunicorn started by hand with one process of 4 threads, its environment saying
    # WEB_THREADS=1, no cap of a user's or of everyone's, and no worker (a check waits 20 s)
    no_checks_in_progress()
    _, token = AuthToken.objects.create(user=bob, expiry=None)
    port = free_port()
    env = processes.env(
        WEB_THREADS="1", SOURCE_CHECKS_AT_ONCE="0", SOURCE_CHECKS_AT_ONCE_IN_ALL="0"
    )
    log = open(processes.log_dir / "web-by-hand.log", "wb")  # noqa: SIM115 (lives as long as the process)
    web = subprocess.Popen(
        ["/bin/sh", "-c", f"exec gunicorn project.wsgi --bind 127.0.0.1:{port} --workers 1 "
         "--threads 4 --no-control-socket"],
        cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    processes.started.append(("web", web))
    base = f"http://127.0.0.1:{port}/api/v1"
    wait_for(lambda: answers(f"{base}/health"), 30, what="the web process")
    headers = {"Authorization": f"Token {token}"}

    def check() -> None:
        with contextlib.suppress(requests.RequestException):
            requests.post(
                f"{base}/imports/check",
                json=check_body("http://127.0.0.1:9/p.csv"),
                headers=headers,
                timeout=60,
            )

    # When bob sends two checks, and a third once both wait
    waiting = [threading.Thread(target=check, daemon=True) for _ in range(2)]
    for thread in waiting:
        thread.start()
    try:
        wait_for(lambda: held_by() == 2, 30, what=f"two checks in progress ({held_by()})")
        third = requests.post(
            f"{base}/imports/check",
            json=check_body("http://127.0.0.1:9/p.csv"),
            headers=headers,
            timeout=10,
        )
    finally:
        # (killed: stopped gently, gunicorn waited for the two checks' 20 s to end)
        processes.stop(web, signal.SIGKILL)
        no_checks_in_progress()

    # Then two went (half of gunicorn's 4 threads; WEB_THREADS=1 let one), the third refused
    # at once for this process
    assert third.status_code == 429, third.text
    assert third.json()["detail"].startswith(
        "2 source checks are in progress on this web process, as many as it takes at once"
    ), third.text


def test_a_sync_workers_one_thread_may_take_a_check(bob, monkeypatch):
    # Given a web process of gunicorn's sync worker (one thread), as gunicorn.conf.py records it
    monkeypatch.setattr(check_slots, "_threads", None)
    check_slots.record_threads(1)
    no_checks_in_progress()

    # When bob checks a source there, and again while it is in progress
    with check_slots.held(bob.pk, 20):
        held = held_by(bob.pk)
        with pytest.raises(check_slots.Busy) as refused, check_slots.held(None, 20):
            pass

    # Then the first is taken (half of one thread would be none, refusing every check), the
    # second refused for the process
    assert held == 1
    assert "on this web process" in str(refused.value)
