"""The sweep stores a lost attempt's end in the result backend (tasks.lost_tasks.end_lost_task),
which waits CELERY_REDIS_SOCKET_TIMEOUT (10 s) a task on a result backend that accepts
connections and never answers: a dozen lost runs reach the sweep's soft time limit (120 s).
Celery raises it inside that wait, and the store caught it with every other error ("not
stored"): the sweep went on past its limit until the hard one killed its pool process, the
rest of the pass (parked lines, notifications, credentials) never reached (reviewC hunt).

In process: the soft time limit raised where Celery raises it, in the result backend's wait.
"""

import pytest
from billiard.exceptions import SoftTimeLimitExceeded
from celery import current_app
from django.utils import timezone

from schedules import services
from tasks import lost_tasks
from tests.test_a_cancelled_run_the_sweep_ended_ends_once_in_flower import events
from tests.test_an_attempt_taken_for_lost_writes_nothing_and_its_note_stays import silent_attempt

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("retries", [0, 3])
def test_the_sweeps_soft_time_limit_reached_while_it_stores_a_lost_end_stops_the_sweep(
    alice, monkeypatch, retries
):
    # Given a lost attempt the sweep resolves (failed, or sent again)
    events(monkeypatch)
    run = silent_attempt(alice, retries=retries)
    resolved = services.recover_lost_run(run.pk, stale_before=timezone.now())

    # ... and the sweep's soft time limit reached while the result backend has not answered
    def waits_past_the_limit(*_args, **_kwargs):
        raise SoftTimeLimitExceeded()

    backend = current_app.backend
    monkeypatch.setattr(backend, "mark_as_failure", waits_past_the_limit)
    monkeypatch.setattr(backend, "store_result", waits_past_the_limit)

    # When the sweep ends the lost task, Then the limit stops it there
    with pytest.raises(SoftTimeLimitExceeded):
        lost_tasks.end_lost_task("attempt-1", resolved, "sweeper@maintenance")
