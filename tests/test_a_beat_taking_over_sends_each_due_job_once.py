"""A standby beat taking over sends each of its due jobs once. It read its jobs again at the
take-over, and django-celery-beat read them a second time within the same loop when its change
row had moved since the standby's start (an import deleted, an operator's edit, the other
beat's start): the heap was rebuilt at the next loop from entries that had not run, and each job
due at the take-over was sent twice, 80 ms apart (churn2 hunt: the sweep, after a leader was
killed under edits)."""

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask, PeriodicTasks

from project.beat import LEADER_LEASE, ImportScheduler
from project.celery import app

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_standby_taking_over_sends_each_due_job_once():
    lease = redis.Redis.from_url(settings.REDIS_URL)
    sent: list[str] = []
    # Given a standby beat (another beat holds the lease) ...
    lease.set(LEADER_LEASE, "another beat", ex=60)
    standby = ImportScheduler(app=app)
    standby.apply_async = lambda entry, **_kw: sent.append(entry.name)
    try:
        standby.tick()
        assert not standby.is_leader
        # ... whose jobs last ran ten minutes ago (the sweep and reconciliation are due, not
        # the hourly retention), the change row moved since it started
        jobs = PeriodicTask.objects.filter(name__startswith="importbeat:maintenance:")
        jobs.update(last_run_at=timezone.now() - timedelta(minutes=10))
        PeriodicTasks.update_changed()

        # When the leader's lease is gone and the standby loops, again at once while it sends
        lease.delete(LEADER_LEASE)
        for _ in range(10):
            if standby.tick() > 0:
                break
        assert standby.is_leader
    finally:
        standby.close()
        lease.delete(LEADER_LEASE)

    # Then each job due was sent once
    assert sorted(sent) == ["importbeat:maintenance:reconcile", "importbeat:maintenance:sweep"]
