"""Expired browser sessions are deleted by the hourly retention.

Django deletes a session at its logout only (`clearsessions` is left to the operator): every
sign-in to the admin or the dashboard that ended without one left its row in django_session
for good, about 100 a day for 50 staff signing in twice a day (growth hunt). The retention job
deletes the expired ones, in batches, and says how many.
"""

from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from tasks import maintenance

pytestmark = pytest.mark.django_db


def session(expires_in: timedelta) -> str:
    store = SessionStore()
    store["who"] = "ops"
    store.set_expiry(timezone.now() + expires_in)
    store.save()
    return store.session_key


def test_retention_deletes_the_expired_sessions_and_keeps_the_live_ones(caplog):
    # Given sessions that expired and one still live
    expired = [session(timedelta(days=-days)) for days in (1, 30, 400)]
    live = session(timedelta(days=1))

    # When the retention job runs
    with caplog.at_level("INFO", logger="importbeat"):
        result = maintenance.delete_old_runs()

    # Then the expired ones are gone, the live one stays, and the job says how many went
    assert result["sessions"] == len(expired)
    assert set(Session.objects.values_list("session_key", flat=True)) == {live}
    assert "3 expired sessions" in caplog.text
