"""Guard: the Celery settings that crash safety rests on stay as they must be."""

from django.conf import settings

from project.celery import app
from tasks.tasks import execute_run


def test_runs_are_acknowledged_late_and_handed_back_when_their_worker_dies():
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert execute_run.acks_late and execute_run.reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1


def test_redis_never_redelivers_a_run_that_may_still_be_working():
    # The visibility timeout must outlive the longest import an import may ask for, with room
    # for its hard limit (+30 s), or a healthy long run would be delivered a second time.
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    assert visibility > settings.MAX_TIMEOUT_SECONDS + 30


def test_everything_is_json():
    assert app.conf.task_serializer == app.conf.result_serializer == "json"
    assert app.conf.accept_content == ["json"]
