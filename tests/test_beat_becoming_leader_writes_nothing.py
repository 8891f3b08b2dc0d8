"""Becoming the leader costs no per-entry writes, however many imports there are (the old
take-over rewrote every entry: 162-182 s without a dispatch at 10,000 imports)."""

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from project.beat import DISPATCH_TASK, LEADER_LEASE, ImportScheduler
from project.celery import app
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_beat_taking_over_reads_its_entries_and_writes_none(alice):
    for i in range(50):
        make_import(alice, "http://127.0.0.1/p.csv", name=f"i{i}", dataset=f"d{i}")
    redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)
    scheduler = ImportScheduler(app=app)
    try:
        with CaptureQueriesContext(connection) as queries:
            assert scheduler._lead()
            scheduler.tick()
    finally:
        scheduler.close()
        redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)

    writes = [
        q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")
    ]
    assert writes == []
    # ... and the imports' entries are not loaded into the vanilla scheduler at all
    assert not [name for name, e in scheduler.schedule.items() if e.task == DISPATCH_TASK]
