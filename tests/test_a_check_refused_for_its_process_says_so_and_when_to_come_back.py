"""A source check refused for its web process's cap says so, in English, and every refusal's
Retry-After is when a slot is sure to be free.

Bugs (review1, schedules/check_slots.py):
- A check refused by its process's cap (half its threads) was told "N source checks are in
  progress, as many as importbeat takes at once", N the process's checks, while
  SOURCE_CHECKS_AT_ONCE_IN_ALL had room (a retry landing on another process is taken); with one,
  "1 source checks are".
- Retry-After was the end of the first slot's wait; a slot whose web process was killed is held
  MARGIN_SECONDS past it, so once its wait had ended the refusal said "Retry-After: 1" for up to
  five seconds in a row, each retry refused again.
"""

from __future__ import annotations

import pytest

from common import database_clock
from common.redis_client import client
from schedules import check_slots
from tests.silent_sources import no_checks_in_progress

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _nothing_in_progress():
    no_checks_in_progress()
    yield
    no_checks_in_progress()


def test_a_check_refused_for_its_process_says_it_is_this_process_that_takes_no_more(settings, bob):
    # Given a web process of 2 threads (one may wait on a check), importbeat taking 8 in all,
    # and one check in progress here
    settings.WEB_THREADS = 2
    settings.SOURCE_CHECKS_AT_ONCE_IN_ALL = 8

    # When bob checks a source on the same process
    with (
        check_slots.held(None, 20),
        pytest.raises(check_slots.Busy) as refused,
        check_slots.held(bob.pk, 20),
    ):
        pass

    # Then he is told this process takes no more, in English, and when to come back
    assert str(refused.value) == (
        "1 source check is in progress on this web process, as many as it takes at once: try "
        f"again in {refused.value.retry_after} s"
    )
    assert refused.value.retry_after in (19, 20)


def test_everyones_cap_of_one_is_said_in_english(settings, bob):
    # Given importbeat taking one check at once, in progress
    settings.WEB_THREADS = 8
    settings.SOURCE_CHECKS_AT_ONCE_IN_ALL = 1

    # When bob checks a source
    with (
        check_slots.held(None, 20),
        pytest.raises(check_slots.Busy) as refused,
        check_slots.held(bob.pk, 20),
    ):
        pass

    # Then the words count one check
    assert str(refused.value).startswith(
        "1 source check is in progress, as many as importbeat takes at once: try again in "
    ), str(refused.value)


def test_retry_after_covers_a_dead_processs_slot_until_it_frees(settings, bob):
    # Given bob's one check at once, held by a web process killed after its wait of 20 s ended
    # a second ago (its slot is kept MARGIN_SECONDS past its wait, then dropped)
    settings.SOURCE_CHECKS_AT_ONCE = 1
    ended = database_clock.timestamp() - 1
    client().zadd(check_slots.user_key(bob.pk), {"killed": ended})

    try:
        # When bob checks again
        with pytest.raises(check_slots.Busy) as refused, check_slots.held(bob.pk, 20):
            pass
    finally:
        client().delete(check_slots.user_key(bob.pk))

    # Then Retry-After reaches the moment the slot frees, not one second from now
    frees_in = ended + check_slots.MARGIN_SECONDS - database_clock.timestamp()
    assert frees_in <= refused.value.retry_after <= frees_in + 1, (
        refused.value.retry_after,
        frees_in,
    )
