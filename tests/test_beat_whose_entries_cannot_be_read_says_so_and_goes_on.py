"""Beat whose maintenance entries cannot be read (the database went away between its dispatch
and django-celery-beat's read of its entries) says so in words and goes on.

django-celery-beat guards its check for changed entries, not its read of them
(`all_as_schedule`): a database that went away in between raised out of beat's loop, and beat
exited, a traceback its last words (CI: a forgotten database connection, beat silent for good).
"""

from __future__ import annotations

import pytest
import redis
from django.conf import settings
from django.db import OperationalError
from django_celery_beat.schedulers import DatabaseScheduler

from project.beat import LEADER_LEASE, ImportScheduler
from project.celery import app

pytestmark = pytest.mark.django_db(transaction=True)


def test_beat_says_its_entries_cannot_be_read_and_reads_them_at_its_next_loop(monkeypatch, caplog):
    redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)
    scheduler = ImportScheduler(app=app)
    try:
        # Given the leading beat, whose read of its entries meets a connection gone
        def away(self, *args, **kwargs):
            raise OperationalError("consuming input failed: could not receive data from server")

        with monkeypatch.context() as patched:
            patched.setattr(DatabaseScheduler, "tick", away)
            # When it ticks
            with caplog.at_level("WARNING", logger="importbeat"):
                wait = scheduler.tick()

        # Then it goes on, saying why in words, and reads its entries afresh at its next loop
        assert 0 <= wait <= 5
        assert "beat cannot reach the database: consuming input failed" in caplog.text
        assert scheduler._initial_read is True
        assert scheduler.tick() >= 0
        assert scheduler._initial_read is False
    finally:
        scheduler.close()
        redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)
