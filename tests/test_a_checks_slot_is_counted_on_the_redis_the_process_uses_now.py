"""A source check's slot is counted on the Redis the process uses now. The script that takes
slots was kept, registered on the client of the process's first check: once REDIS_URL named
another Redis (a test's, gone since), every later check of the process went uncounted
("source checks in progress not counted, Redis did not answer"), its caps not enforced, and a
test of everyone's cap failed in CI after a test that had done so ran in its process."""

from __future__ import annotations

import pytest

from common.redis_client import client
from project.devservices import free_port
from schedules import check_slots
from tests.silent_sources import held_by, no_checks_in_progress

pytestmark = pytest.mark.django_db


def test_a_check_counts_its_slot_on_the_redis_the_process_uses_now(alice, settings):
    # Given a check made while REDIS_URL named a Redis that is not there (its slot uncounted)
    no_checks_in_progress()
    suites = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    client.cache_clear()
    with check_slots.held(alice.pk, 1):
        pass

    # When REDIS_URL names the suite's Redis again
    settings.REDIS_URL = suites
    client.cache_clear()

    # Then a check's slot is counted there
    with check_slots.held(alice.pk, 5):
        assert held_by(alice.pk) == 1
    assert held_by(alice.pk) == 0
