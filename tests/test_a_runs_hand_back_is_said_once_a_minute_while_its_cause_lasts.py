"""A worker that hands runs back to the queue for one cause (its Redis of run locks refusing
the login, say) says it at once, then once a minute with how often it was met meanwhile.

Each delivery logged it: a run handed back comes again after REQUEUE_PAUSE_SECONDS, so a worker
said "run 7 goes back to the queue: Redis at … refuses the login: …" every ~2 s for as long as
the password stayed wrong, per run waiting (refuse6 hunt, words4 hunt). /health's log and
Flower's lines fold their repeats alike (common.said_once). A real Redis with an ACL user.
"""

from __future__ import annotations

import logging

import pytest
from celery.exceptions import Reject

from common import said_once
from common.said_once import SaidOnce
from schedules.models import ImportRun
from tasks import runner
from tests.bound_task import BoundTask
from tests.factories import make_import
from tests.reliability import redis_url_as_imp

pytestmark = pytest.mark.django_db

LOGIN_REFUSED = (
    "the user name or password in its URL is wrong or missing, or that user is disabled in its ACL"
)


@pytest.fixture
def refusing_redis(tmp_path, settings):
    """REDIS_URL on a Redis of its own, as the ACL user `imp`, whose password is not the URL's."""
    with redis_url_as_imp(tmp_path, settings, password="changed") as (server, _admin):
        yield server


def hand_back(run: ImportRun) -> None:
    with pytest.raises(Reject):
        runner.execute(run.pk, BoundTask())


def test_a_hand_back_is_said_once_then_once_a_minute_with_a_count(
    refusing_redis, alice, monkeypatch, caplog
):
    monkeypatch.setattr(runner, "REQUEUE_PAUSE_SECONDS", 0)
    monkeypatch.setattr(runner, "_handed_back", SaidOnce(), raising=False)
    now = [1000.0]
    monkeypatch.setattr(said_once.time, "monotonic", lambda: now[0])
    first = ImportRun.objects.create(
        scheduled_import=make_import(alice, "http://127.0.0.1:9/a.csv", name="a"), trigger="manual"
    )
    second = ImportRun.objects.create(
        scheduled_import=make_import(alice, "http://127.0.0.1:9/b.csv", name="b"), trigger="manual"
    )
    refused = (
        f"goes back to the queue: Redis at 127.0.0.1:{refusing_redis.port} refuses the login: "
        f"{LOGIN_REFUSED}"
    )

    with caplog.at_level(logging.WARNING, logger="importbeat.runs"):
        # Given a worker whose Redis refuses its login
        # When it takes two runs again and again for half a minute
        for _delivery in range(8):
            hand_back(first)
            hand_back(second)
            now[0] += 4  # both runs come again
        # Then it said the cause once, at once
        said = [r.getMessage() for r in caplog.records if r.name == "importbeat.runs"]
        assert said == [f"run {first.pk} {refused}"]

        # And once a minute is over, once more, with how often it was met meanwhile
        now[0] = 1000.0 + 61
        hand_back(second)
        hand_back(first)
    said = [r.getMessage() for r in caplog.records if r.name == "importbeat.runs"]
    assert said == [
        f"run {first.pk} {refused}",
        f"run {second.pk} {refused} (met 15 times more in the last 61 s)",
    ]
