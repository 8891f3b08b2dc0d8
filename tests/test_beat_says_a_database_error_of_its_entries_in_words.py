"""django-celery-beat's own check for changed entries says a database error in one line, in
words, as beat's loop does. Beat skips that check while its loop cannot reach the database, but
a database that went away between the two made it log "Database gave error" with a traceback,
once per outage (project.beat.DatabaseErrorInWords)."""

import logging

import pytest
import redis
from django.conf import settings
from django.db import OperationalError
from django_celery_beat.models import PeriodicTasks

from project.beat import LEADER_LEASE, ImportScheduler
from project.celery import app

pytestmark = pytest.mark.django_db(transaction=True)

REFUSED = (
    'connection failed: connection to server at "10.0.0.5", port 5432 failed: Connection '
    "refused\n\tIs the server running on that host and accepting TCP/IP connections?"
)


def test_a_database_error_of_django_celery_beats_check_is_one_line_in_words(caplog, monkeypatch):
    redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)
    scheduler = ImportScheduler(app=app)
    try:
        # When the database goes away as django-celery-beat looks for changed entries
        def away():
            raise OperationalError(REFUSED)

        monkeypatch.setattr(PeriodicTasks, "last_change", away)
        with caplog.at_level(logging.INFO):
            changed = scheduler.schedule_changed()
    finally:
        scheduler.close()
        redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)

    # Then it says so in one line, as beat's loop does, with no traceback
    assert changed is False
    [said] = [
        r
        for r in caplog.records
        if r.name == "django_celery_beat.schedulers" and r.levelno > logging.INFO
    ]
    assert (said.levelname, said.exc_info) == ("WARNING", None)
    assert said.getMessage() == (
        'beat cannot reach the database: connection failed: connection to server at "10.0.0.5",'
        " port 5432 failed: Connection refused Is the server running on that host and accepting"
        " TCP/IP connections?"
    )


def test_a_database_that_does_not_answer_beats_clock_read_is_said(caplog, monkeypatch):
    # Given beat, whose tick reads the database's clock (every 30 s) to stamp its last tick
    from common import database_clock

    redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)
    scheduler = ImportScheduler(app=app)
    try:
        # When the database does not answer that read (a connection the network forgot held
        # beat there 30 s, and the clock's fallback to its last offset said nothing)
        def away(cursor):
            raise OperationalError(REFUSED)

        monkeypatch.setattr(database_clock, "_read", away)
        # (the database's clock is read again, not the suite's in-process 0)
        monkeypatch.setattr(database_clock, "offset", lambda strict=False: (
            database_clock.measure(strict=strict)
        ))  # fmt: skip
        with caplog.at_level(logging.INFO):
            scheduler._stamp_last_tick()
    finally:
        scheduler.close()
        redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)

    # Then beat says so, as when its dispatch meets it, and skips its entries' tick this time
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert said == [f"beat cannot reach the database: {REFUSED}"]
    assert scheduler.database_away


def test_a_beat_starting_beside_another_takes_the_entries_the_other_made(monkeypatch):
    # Two beats starting at once both found a maintenance entry missing and created it: the
    # second's create was refused as a duplicate name, a ValidationError that stopped that beat
    # with a traceback, leaving no standby to take over
    from django.core.exceptions import ValidationError

    from project.beat import ImportScheduler as Scheduler

    made = Scheduler(app=app)  # the first beat: its entries are in the table
    made.close()
    from_entry = Scheduler.Entry.from_entry.__func__
    refused = []

    def the_other_beat_made_it_first(cls, name, app=None, **entry):
        if name not in refused:
            refused.append(name)
            raise ValidationError({"name": ["Periodic task with this Name already exists."]})
        return from_entry(cls, name, app=app, **entry)

    monkeypatch.setattr(Scheduler.Entry, "from_entry", classmethod(the_other_beat_made_it_first))
    second = Scheduler(app=app)
    try:
        assert refused and set(refused) <= set(second.schedule)
    finally:
        second.close()
