"""A notification's delivery that fails on an error quoting what it sends keeps the import's
credential out of its log and of what Celery logs and shows of it (Flower's task events): the
e-mail and the webhook carry the run's texts, and a run saved before they were hidden may still
hold the secret (until `manage.py hide_run_secrets`). An e-mail's texts are hidden before it is
sent, its own or a digest's; a mail server's refusal is told in the delivery log."""

from __future__ import annotations

import smtplib

import pytest
from django.core.mail.backends.base import BaseEmailBackend

from schedules.models import NotificationDelivery, OwnerMailbox
from tasks import webhooks
from tasks.errors import TransientImportError
from tests.echo_support import leaks, sent_forms
from tests.factories import make_import
from tests.saved_runs_support import CREDENTIAL, legacy_run

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("encryption_key")]


class QuotingServer(BaseEmailBackend):
    """An SMTP server whose content filter refuses the message, quoting it."""

    def send_messages(self, messages) -> int:
        raise smtplib.SMTPDataError(554, f"5.7.1 refused: {messages[0].body}".encode())


class BusyQuotingServer(BaseEmailBackend):
    """A server that asks to try later, quoting the message."""

    def send_messages(self, messages) -> int:
        raise smtplib.SMTPDataError(451, f"4.7.1 try later: {messages[0].body}".encode())


class BrokenBackend(BaseEmailBackend):
    """A backend with a bug of its own, whose error quotes the message."""

    def send_messages(self, messages) -> int:
        raise ValueError(f"cannot encode {messages[0].body}")


def failed_run_email(alice) -> NotificationDelivery:
    imp = make_import(
        alice, "https://files.example.com/p.csv", credential=CREDENTIAL, notify_on=["failed"],
        notify_channels=["email"],
    )  # fmt: skip
    run = legacy_run(imp)
    return NotificationDelivery.objects.create(
        scheduled_import=imp, run=run, event="failed", channel="email"
    )


def test_a_mail_server_quoting_an_old_runs_text_is_told_without_the_secret(alice, settings):
    # Given the e-mail of an old run whose text holds the secret, and a server that quotes it
    delivery = failed_run_email(alice)
    settings.EMAIL_BACKEND = f"{__name__}.QuotingServer"

    # When it is delivered (the task's body), then its log says the server refused it, in
    # words, the secret hidden (before, the task crashed, and the log said nothing)
    webhooks.deliver(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert delivery.error.startswith("the mail server refused the e-mail (554 5.7.1 refused: ")
    assert "HTTP 503 Basic [hidden]" in delivery.error
    assert leaks([delivery.error], sent_forms(CREDENTIAL)) == []


def test_a_retried_mail_failure_is_raised_without_the_secret(alice, settings):
    # Given the same e-mail and server, and attempts left
    delivery = failed_run_email(alice)
    settings.EMAIL_BACKEND = f"{__name__}.BusyQuotingServer"

    # When it is delivered, then what the task raises (Celery logs it, Flower shows it) and
    # chains along holds no secret either
    with pytest.raises(TransientImportError) as raised:
        webhooks.deliver(delivery.pk)

    told = [str(raised.value), repr(raised.value), repr(raised.value.__cause__)]
    assert "HTTP 503 Basic [hidden]" in told[0] and raised.value.__cause__ is None
    assert leaks(told, sent_forms(CREDENTIAL)) == []


def test_an_unexpected_error_quoting_an_old_runs_text_is_raised_without_the_secret(alice, settings):
    delivery = failed_run_email(alice)
    settings.EMAIL_BACKEND = f"{__name__}.BrokenBackend"

    # The e-mail's texts are hidden before it is sent: what a backend quotes of it holds no
    # secret, so its error is raised as it is (crashes.secrets_hidden has nothing to hide)
    with pytest.raises(ValueError) as crashed:
        webhooks.deliver(delivery.pk)

    told = str(crashed.value)
    assert "HTTP 503 Basic [hidden]" in told
    assert leaks([told, repr(crashed.value)], sent_forms(CREDENTIAL)) == []


def test_a_held_email_the_server_quotes_is_told_without_the_secret(alice, settings):
    # Given the e-mail of an old run held for the owner's next one, and a server that quotes it
    delivery = failed_run_email(alice)
    delivery.status = "held"
    delivery.save()
    OwnerMailbox.objects.create(user=alice)
    settings.EMAIL_BACKEND = f"{__name__}.QuotingServer"

    # When the owner's message sends it alone (its own e-mail, not a digest's lines)
    webhooks.send_digest(alice.pk)

    # Then its log says the server refused it, the secret hidden
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert "HTTP 503 Basic [hidden]" in delivery.error
    assert leaks([delivery.error], sent_forms(CREDENTIAL)) == []
