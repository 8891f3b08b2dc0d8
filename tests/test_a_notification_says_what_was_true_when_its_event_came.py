"""A notification says what was true when its event came, and one that has no reason to go out
any more is skipped on every channel (schedules.notifications.no_longer_due,
schedules.alerts.streak_at). Before, an alert held for the owner's digest, or retried, after the
import recovered said "failed 0 times in a row"; a webhook retried after the owner removed the
callback went on posting to it; a run deleted while its notifications waited went out as an
import's event ("it missed a tick"); a late webhook went out with `late_since: null` after the
import was on time again, while its e-mail was skipped."""

from __future__ import annotations

import pytest
from django.core import mail

from common import database_clock
from schedules import notifications, services
from schedules.models import ImportRun, NotificationDelivery, ScheduledImport
from tasks import webhooks
from tasks.errors import TransientImportError
from tests.api_support import SOURCE, make_run
from tests.factories import make_import
from tests.webhook_support import Hook, when_due

pytestmark = pytest.mark.django_db


def end(imp, status: str) -> ImportRun:
    run = make_run(imp, "running", attempts=1)
    error = "" if status == "succeeded" else "the server answered HTTP 503"
    return services.finish_run(run, status, counts=services.RunCounts(), error=error)


def test_an_alert_sent_after_the_import_recovered_tells_the_streak_it_was_about(alice, settings):
    settings.EMAIL_DIGEST_SECONDS = 0
    hook = Hook([503])
    imp = make_import(alice, SOURCE, callback_url=hook.url, alert_after_failures=3)
    for _ in range(3):
        end(imp, "failed")
    by_mail = NotificationDelivery.objects.get(event="alert", channel="email")
    by_hook = NotificationDelivery.objects.get(event="alert", channel="webhook")
    with pytest.raises(TransientImportError):
        webhooks.deliver(by_hook.pk)

    # When the import recovers before the e-mail and the webhook's retry go out
    end(imp, "succeeded")
    webhooks.deliver(by_mail.pk)
    when_due(by_hook.pk)
    webhooks.deliver(by_hook.pk)

    # Then both say the three failures the alert was about
    assert mail.outbox[0].subject == "[importbeat] products failed 3 times in a row"
    assert [body["import"]["consecutive_failures"] for body in hook.received] == [3, 3]


def test_a_webhook_whose_callback_the_owner_removed_is_not_retried_to_it(alice):
    old = Hook([503])
    imp = make_import(
        alice, SOURCE, callback_url=old.url, notify_on=["failed"], notify_channels=["webhook"],
        alert_after_failures=0,
    )  # fmt: skip
    run = end(imp, "failed")
    delivery = NotificationDelivery.objects.get(run=run)
    with pytest.raises(TransientImportError):
        webhooks.deliver(delivery.pk)

    services.update_import(imp, callback_url="", notify_on=[], notify_channels=["email"])
    when_due(delivery.pk)  # (its retry)
    webhooks.deliver(delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.error) == (
        "skipped", "the import's callback URL was removed before it went out",
    )  # fmt: skip
    assert len(old.requests) == 1


def test_the_notifications_of_a_run_deleted_meanwhile_are_skipped(alice, settings):
    settings.EMAIL_DIGEST_SECONDS = 0
    hook = Hook()
    imp = make_import(
        alice, SOURCE, callback_url=hook.url, notify_on=["failed"], alert_after_failures=1
    )
    run = end(imp, "failed")
    waiting = list(NotificationDelivery.objects.filter(run=run).values_list("pk", flat=True))
    assert len(waiting) == 4  # failed and alert, by e-mail and webhook
    ImportRun.objects.filter(pk=run.pk).delete()

    for pk in waiting:
        webhooks.deliver(pk)

    said = set(NotificationDelivery.objects.values_list("status", "error"))
    assert said == {("skipped", "its run was deleted before it went out")}
    assert (hook.received, mail.outbox) == ([], [])


def test_a_late_webhook_is_skipped_as_its_e_mail_is_once_the_import_is_on_time(alice):
    hook = Hook()
    imp = make_import(
        alice, SOURCE, callback_url=hook.url, notify_on=["late"],
        notify_channels=["email", "webhook"],
    )  # fmt: skip
    ScheduledImport.objects.filter(pk=imp.pk).update(
        late_since=database_clock.now(), missed_ticks=1
    )
    notifications.on_imports_late([imp.pk])
    ScheduledImport.objects.filter(pk=imp.pk).update(late_since=None)  # on time again

    for delivery in NotificationDelivery.objects.filter(scheduled_import=imp):
        webhooks.deliver(delivery.pk)

    said = set(NotificationDelivery.objects.values_list("channel", "status", "error"))
    assert said == {
        ("email", "skipped", "the import ran on time again before it went out"),
        ("webhook", "skipped", "the import ran on time again before it went out"),
    }
    assert hook.received == []
