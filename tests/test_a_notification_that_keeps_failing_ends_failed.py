"""A notification that keeps failing for a while is tried six times, then failed for good.

Celery ends a task's retries at its own `max_retries` (3 by default) unless the task says
otherwise: the fourth transient failure of a webhook was raised as an unexpected error (a
traceback in the worker's log), its delivery left `retrying` for ever, with no next try and no
word that it had ended. The delivery log's count against MAX_RETRIES decides now.
"""

import pytest

from schedules.models import NotificationDelivery
from tasks import webhooks
from tests.factories import make_import
from tests.test_alerts_after_consecutive_failures import fail, run_deliveries_here
from tests.webhook_support import Hook

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def unavailable():
    receiver = Hook(statuses=[503] * 20)
    yield receiver
    receiver.close()


def test_a_webhook_answering_503_each_time_is_failed_after_its_sixth_attempt(
    alice, unavailable, monkeypatch
):
    # Given an import whose callback answers 503 whenever it is called
    run_deliveries_here(monkeypatch)
    imp = make_import(alice, "http://127.0.0.1/p.csv", notify_on=["failed"],
                      notify_channels=["webhook"], callback_url=unavailable.url)  # fmt: skip

    # When its run fails (the retries run here at once)
    fail(imp)

    # Then the notification was tried 1 + MAX_RETRIES times and is failed, saying why
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 1 + webhooks.MAX_RETRIES)
    assert delivery.error == "the callback answered HTTP 503"
    assert len(unavailable.requests) == 1 + webhooks.MAX_RETRIES
