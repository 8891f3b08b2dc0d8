"""What a notification sends and what its log says: a webhook hides the source's credential as
the same notification's e-mail does (it posted a run's saved texts, credential and all, to the
callback); a deactivated owner is sent nothing on any channel (their webhooks went on, the
streak alert's too); and the log keeps the status a receiver refused with (a 404 was logged as
no answer at all)."""

import pytest
from django.core import mail

from schedules import services
from schedules.models import ImportRun, NotificationDelivery
from tasks import webhooks
from tests.api_support import API, client_for
from tests.echo_support import leaks, sent_forms
from tests.factories import make_import, make_import_saved_earlier
from tests.saved_runs_support import CREDENTIAL, legacy_run
from tests.webhook_support import Hook

pytestmark = pytest.mark.django_db

SOURCE = "http://127.0.0.1:9/products.csv"


@pytest.fixture
def hook():
    receiver = Hook()
    yield receiver
    receiver.close()


def a_failed_run(imp) -> ImportRun:
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="schedule", status="running", attempts=1
    )
    return services.finish_run(run, "failed", error="boom")


@pytest.mark.usefixtures("encryption_key")
def test_a_webhook_hides_the_credential_as_its_email_does(alice, hook, settings):
    # Given a run saved before the runner hid its texts, holding the credential it was sent
    settings.EMAIL_DIGEST_SECONDS = 0
    imp = make_import_saved_earlier(
        alice, "https://files.example.com/p.csv", credential=CREDENTIAL, notify_on=["failed"],
        notify_channels=["email", "webhook"], callback_url=hook.url,
    )  # fmt: skip
    run = legacy_run(imp)
    deliveries = [
        NotificationDelivery.objects.create(
            scheduled_import=imp, run=run, event=event, channel=channel,
            target=hook.url if channel == "webhook" else "",
        )
        for event, channel in (("failed", "email"), ("failed", "webhook"), ("alert", "webhook"))
    ]  # fmt: skip

    # When its notifications go out
    for delivery in deliveries:
        webhooks.deliver(delivery.pk)

    # Then neither the e-mail nor the POSTs carry it, in any form it was sent in
    assert "HTTP 503 Basic [hidden]" in mail.outbox[0].body
    bodies = [body.decode() for _, body in hook.requests]
    assert len(bodies) == 2 and "Basic [hidden]" in bodies[0]
    assert leaks([mail.outbox[0].body, *bodies], sent_forms(CREDENTIAL)) == []


def test_a_deactivated_owner_is_sent_nothing_on_any_channel(alice, hook):
    imp = make_import(alice, SOURCE, notify_on=["failed"], notify_channels=["email", "webhook"],
                      callback_url=hook.url, alert_after_failures=1)  # fmt: skip
    a_failed_run(imp)
    alice.is_active = False
    alice.save()

    for delivery in NotificationDelivery.objects.all():
        webhooks.deliver(delivery.pk)

    assert hook.requests == [] and mail.outbox == []
    assert set(NotificationDelivery.objects.values_list("channel", "status")) == {
        ("email", "skipped"), ("webhook", "skipped"),
    }  # fmt: skip


@pytest.mark.parametrize("answer", [404, 410, 301])
def test_a_refused_webhook_logs_the_status_it_was_answered(alice, answer):
    hook = Hook([answer])
    try:
        imp = make_import(alice, SOURCE, notify_on=["failed"], notify_channels=["webhook"],
                          callback_url=hook.url, alert_after_failures=0)  # fmt: skip
        a_failed_run(imp)
        (delivery,) = NotificationDelivery.objects.all()
        webhooks.deliver(delivery.pk)
    finally:
        hook.close()

    (shown,) = client_for(alice).get(f"{API}/imports/{imp.pk}/deliveries/").json()["results"]
    assert (shown["status"], shown["response_status"]) == ("failed", answer)
    assert f"HTTP {answer}" in shown["error"]


OLD = {"kind": "bearer", "token": "old-token-4f9a1c77e2"}
NEW = {"kind": "bearer", "token": "new-token-8d2b6e11a0"}


@pytest.mark.usefixtures("encryption_key")
def test_a_credential_replaced_while_its_run_ran_is_hidden_in_the_run_and_its_notices(
    alice, hook, settings
):
    from schedules import replaced_credentials
    from schedules.models import ReplacedCredential

    settings.EMAIL_DIGEST_SECONDS = 0
    imp = make_import_saved_earlier(
        alice, "https://files.example.com/p.csv", credential=OLD, notify_on=["failed"],
        notify_channels=["email", "webhook"], callback_url=hook.url,
    )  # fmt: skip
    # Given a run fetching with the old token (loaded as the runner loads it at its start)
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="schedule", status="running", attempts=1
    )
    run = services.load_run(run.pk)
    # When the owner replaces it meanwhile (it leaked), the hiding job runs at once, and the
    # source then refuses the old token, quoting it
    services.update_import(imp, credential=NEW)
    for replaced in ReplacedCredential.objects.all():
        replaced_credentials.hide(replaced.pk)
    services.finish_run(run, "failed", error=f"HTTP 401: token {OLD['token']} was revoked")
    for delivery in NotificationDelivery.objects.filter(run=run):
        webhooks.deliver(delivery.pk)

    # Then neither the run log, nor its e-mail, nor its webhook shows it
    run.refresh_from_db()
    told = [run.error_message, mail.outbox[0].body, *[b.decode() for _, b in hook.requests]]
    assert len(told) == 3 and not [text for text in told if OLD["token"] in text]
