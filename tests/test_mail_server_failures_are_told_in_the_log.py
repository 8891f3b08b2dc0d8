"""A mail server that cannot take an e-mail is told in the notification's log, in words, and
retried when it may pass later. Before, the notification stayed `pending` without a word, and
the sweep sent it again every half hour, for ever."""

from __future__ import annotations

import pytest
from django.core import mail

from project.devservices import free_port
from schedules.models import NotificationDelivery
from tasks import destinations, webhooks
from tasks.errors import TransientImportError
from tasks.mail_errors import mail_server
from tests.api_support import SOURCE, make_run
from tests.factories import make_import
from tests.smtp_support import smtp_server
from tests.webhook_support import when_due

pytestmark = pytest.mark.django_db


def failed_run_email(alice) -> NotificationDelivery:
    imp = make_import(alice, SOURCE, notify_on=["failed"], notify_channels=["email"])
    run = make_run(imp, "failed", error_message="the server answered HTTP 503")
    return NotificationDelivery.objects.create(
        scheduled_import=imp, run=run, event="failed", channel="email"
    )


def use(settings, email_url: str) -> None:
    """The settings EMAIL_URL gives (project/settings.py), as a worker started with it has."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, port = email_url.removeprefix("smtp://").split(":")
    settings.EMAIL_PORT = int(port)


def test_an_unreachable_mail_server_is_retried_and_said(alice, settings):
    # Given no mail server where EMAIL_URL points
    delivery = failed_run_email(alice)
    use(settings, f"smtp://127.0.0.1:{free_port()}")

    # When the e-mail is tried with attempts left, then the task retries and the log says why
    with pytest.raises(TransientImportError):
        webhooks.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "retrying"
    server = f"127.0.0.1:{settings.EMAIL_PORT}"
    assert delivery.error == f"cannot reach the mail server {server} (Connection refused)"

    # When the last attempt fails too, then it failed for good, saying why
    destinations.answered(mail_server())  # its wait over (destinations: one try per wait)
    NotificationDelivery.objects.filter(pk=delivery.pk).update(attempts=5)  # (its log counts)
    when_due(delivery.pk)
    webhooks.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 6)
    assert "cannot reach the mail server" in delivery.error


def test_a_retried_email_goes_out_once_the_server_answers(alice, settings):
    delivery = failed_run_email(alice)
    use(settings, f"smtp://127.0.0.1:{free_port()}")
    with pytest.raises(TransientImportError):
        webhooks.deliver(delivery.pk)

    with smtp_server() as (email_url, mailbox):
        use(settings, email_url)
        when_due(delivery.pk)  # (its retry)
        webhooks.deliver(delivery.pk)

        [received] = mailbox.received()
    assert received["Subject"] == "[importbeat] products: failed"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error, delivery.attempts) == ("delivered", "", 2)


def test_a_refused_address_fails_at_once_naming_it(alice, settings):
    delivery = failed_run_email(alice)
    with smtp_server(refuse_recipients=True) as (email_url, _mailbox):
        use(settings, email_url)
        webhooks.deliver(delivery.pk)  # not retried: it would be refused again

    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert delivery.error == (
        "the mail server refused the address alice@example.com (550 5.1.1 no such user)"
    )
    assert not mail.outbox
