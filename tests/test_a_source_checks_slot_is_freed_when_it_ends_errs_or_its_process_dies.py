"""A check's slot (schedules.check_slots) is given back when the check ends, however it ends,
and frees by itself once its web process died holding it.

Bug (attack hunt): checks in progress had no count at all, and one user's held every web
thread; a count whose slots were not given back (an error, a killed web process) would refuse
that user's checks for good.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from redis.exceptions import RedisError

from schedules import check_slots, source_check, unsaved_checks
from tests.conftest import wait_for
from tests.factories import make_import
from tests.silent_sources import held_by, no_checks_in_progress

pytestmark = pytest.mark.django_db(transaction=True)

SOURCE = "http://127.0.0.1:9/products.csv"


@pytest.fixture(autouse=True)
def _one_check_each(settings):
    settings.SOURCE_CHECKS_AT_ONCE = 1
    settings.SOURCE_CHECKS_AT_ONCE_IN_ALL = 8
    no_checks_in_progress()


def test_a_slot_is_given_back_when_its_check_ends(bob):
    # Given bob's import, and no worker
    imp = make_import(bob, SOURCE)

    # When bob's check ends without an answer, then another
    first = source_check.check_source(imp, wait=0.3, by=bob.pk)
    held_after = held_by(bob.pk), held_by()
    second = source_check.check_source(imp, wait=0.3, by=bob.pk)

    # Then each was asked of a worker in turn: the first's slot was given back
    assert held_after == (0, 0)
    assert (
        first.problems
        == second.problems
        == ["no worker answered within 0.3 s; is a worker running?"]
    )


def test_a_slot_is_given_back_when_its_check_errs(bob, monkeypatch):
    imp = make_import(bob, SOURCE)

    # Given a check that fails unexpectedly on the web, and one whose fields Redis refuses
    def broken(*_args, **_kwargs):
        raise RuntimeError("the check broke")

    monkeypatch.setattr(source_check, "_ask", broken)
    with pytest.raises(RuntimeError):
        source_check.check_unsaved(imp, wait=0.3, by=bob.pk)
    after_error = held_by(bob.pk)

    def refused(*_args, **_kwargs):
        raise RedisError("OOM command not allowed")

    monkeypatch.setattr(unsaved_checks, "put", refused)
    unavailable = source_check.check_unsaved(imp, wait=0.3, by=bob.pk)

    # Then neither holds its slot
    assert after_error == 0
    assert unavailable.problems == [source_check.QUEUE_UNAVAILABLE]
    assert held_by(bob.pk) == 0 and held_by() == 0


HOLDER = """
import sys, time, django
django.setup()
from schedules import check_slots
with check_slots.held(int(sys.argv[1]), float(sys.argv[2])):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_slot_whose_process_died_frees_past_its_wait(bob):
    # Given a web process holding bob's one slot for a check it waits 1 s for, killed
    wait = 1.0
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(bob.pk), str(wait)],
        stdout=subprocess.PIPE,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings",
             "SOURCE_CHECKS_AT_ONCE": "1"},
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == b"held\n"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    killed_at = time.monotonic()

    # When bob checks at once, and again later
    with pytest.raises(check_slots.Busy) as refused, check_slots.held(bob.pk, wait):
        pass
    wait_for(lambda: _takes(bob.pk, wait), wait + check_slots.MARGIN_SECONDS + 5,
             what="the dead process's slot freed")  # fmt: skip
    freed_after = time.monotonic() - killed_at

    # Then the dead process's slot held until past its wait, and then freed by itself
    assert str(refused.value) == "1 source check of yours is in progress: wait for it to end"
    assert refused.value.retry_after == 1
    print(f"slot of a killed process freed after {freed_after:.1f} s")
    assert held_by(bob.pk) == 0


def _takes(user_id: int, wait: float) -> bool:
    try:
        with check_slots.held(user_id, wait):
            return True
    except check_slots.Busy:
        return False
