"""Beat's daily jobs (Celery's backend cleanup at 04:00, a maintenance job an operator moved to
a daily hour in the admin) are sent once, at their hour, while beat reads its jobs again and
again (an import deleted moves django-celery-beat's change row). Beat reads all its jobs at
every read, without django-celery-beat's window of two hours (churn hunt): what keeps a daily
job to its hour is its schedule and the time it last ran, saved before each read."""

from datetime import UTC, datetime, timedelta

import pytest
import redis
import time_machine
from django.conf import settings
from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks

from project.beat import LEADER_LEASE, ImportScheduler
from project.celery import app

pytestmark = pytest.mark.django_db(transaction=True)

RETENTION = "importbeat:maintenance:retention"
CLEANUP = "celery.backend_cleanup"  # django-celery-beat's, daily at 04:00


def test_daily_jobs_are_sent_once_at_their_hour_across_rereads():
    redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)
    start = datetime(2026, 12, 8, 3, 20, tzinfo=UTC)
    sent: list[tuple[str, datetime]] = []
    with time_machine.travel(start, tick=False) as clock:
        # Given a leading beat
        scheduler = ImportScheduler(app=app)
        scheduler.apply_async = lambda entry, **_kw: sent.append((entry.name, datetime.now(UTC)))
        try:
            while scheduler.tick() == 0:
                pass
            assert scheduler.is_leader
            # ... whose retention job an operator moved to 03:30 daily in the admin
            job = PeriodicTask.objects.get(name=RETENTION)
            job.interval = None
            job.crontab = CrontabSchedule.objects.create(minute="30", hour="3", timezone="UTC")
            job.save()

            # When beat loops every 10 s from 03:20 to 04:10, reading its jobs again every
            # other loop (the change row moved, as an import's deletion moves it)
            now = start
            while now < start + timedelta(minutes=50):
                now += timedelta(seconds=10)
                clock.move_to(now)
                if now.second % 20 == 0:
                    PeriodicTasks.update_changed()
                # As beat's loop does: again at once while it sends a job (one a call)
                for _ in range(10):
                    if scheduler.tick() > 0:
                        break
        finally:
            scheduler.close()
            redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)

    # Then each daily job was sent once, in the loop at its hour
    daily = [(name, at) for name, at in sent if name in (RETENTION, CLEANUP)]
    assert daily == [
        (RETENTION, datetime(2026, 12, 8, 3, 30, tzinfo=UTC)),
        (CLEANUP, datetime(2026, 12, 8, 4, 0, tzinfo=UTC)),
    ]
