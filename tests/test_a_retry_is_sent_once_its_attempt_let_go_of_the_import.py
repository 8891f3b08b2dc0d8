"""A run's retry is sent once its attempt has let go of the import's lease and its owner's
slot (chaos hunt). Sent from inside the attempt, a retry due in 0 s (full jitter draws it
about once in 31 first retries) reached an idle worker before the lease was released: it found
the lease held by its own run and came back a whole lease later (60 s in production) "for an
earlier attempt", while the run said "retrying in 0s"; and a fast second attempt's SUCCESS
reached Flower before the first's RETRY, which Flower then kept for good."""

import pytest

from schedules.models import ImportRun
from tasks import fairness, locks, runner
from tests.bound_task import BoundTask, Retried
from tests.factories import make_import

pytestmark = pytest.mark.django_db


class WatchingTask(BoundTask):
    """A bound task whose retry notes what held the import when the retry was sent."""

    def __init__(self, import_id: int) -> None:
        super().__init__()
        self.import_id = import_id
        self.lease_holder_at_retry: list[int | None] = []

    def retry(self, countdown: float, max_retries=None, exc=None, throw=True):
        self.lease_holder_at_retry.append(locks.run_lease_holder(self.import_id))
        return super().retry(countdown, max_retries, exc, throw)


def test_the_retry_is_sent_after_the_lease_is_released_and_the_slot_handed_on(
    alice, csv_server, monkeypatch
):
    # Given a run whose source answers 503, retried at once
    imp = make_import(
        alice, csv_server.serve("/busy.csv", b"", status=503), retry_backoff_seconds=0
    )
    run = ImportRun.objects.create(scheduled_import=imp, trigger="manual")
    task = WatchingTask(imp.pk)
    order: list[str] = []
    hand_on = fairness.hand_on

    def noted_hand_on(*args, **kwargs):
        order.append("slot handed on")
        return hand_on(*args, **kwargs)

    monkeypatch.setattr(fairness, "hand_on", noted_hand_on)
    real_retry = task.retry

    def noted_retry(*args, **kwargs):
        order.append("retry sent")
        return real_retry(*args, **kwargs)

    monkeypatch.setattr(task, "retry", noted_retry)

    # When a worker runs its attempt
    with pytest.raises(Retried, match="HTTP 503"):
        runner.execute(run.pk, task)

    # Then the retry went once nothing of the attempt held the import
    run.refresh_from_db()
    assert run.status == "retrying" and task.countdowns == [0]
    assert task.lease_holder_at_retry == [None]
    assert order == ["slot handed on", "retry sent"]
