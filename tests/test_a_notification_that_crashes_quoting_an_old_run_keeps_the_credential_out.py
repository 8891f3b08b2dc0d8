"""A notification's delivery that stops on an unexpected error quoting what it sends keeps the
import's credential out of what Celery logs and shows of it (Flower's task events): the e-mail
and the webhook carry the run's texts, and a run saved before they were hidden may still hold
the secret (until `manage.py hide_run_secrets`). An error that holds no secret leaves as it is."""

from __future__ import annotations

import smtplib

import pytest
from django.core.mail.backends.base import BaseEmailBackend

from schedules.models import NotificationDelivery
from tasks import webhooks
from tasks.crashes import TaskCrashed
from tests.echo_support import leaks, sent_forms
from tests.factories import make_import
from tests.saved_runs_support import CREDENTIAL, legacy_run

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("encryption_key")]


class QuotingServer(BaseEmailBackend):
    """An SMTP server whose content filter refuses the message, quoting it."""

    def send_messages(self, messages) -> int:
        raise smtplib.SMTPDataError(554, f"5.7.1 refused: {messages[0].body}".encode())


class AbsentServer(BaseEmailBackend):
    def send_messages(self, messages) -> int:
        raise ConnectionRefusedError(111, "Connection refused")


def failed_run_email(alice) -> NotificationDelivery:
    imp = make_import(alice, "https://files.example.com/p.csv", credential=CREDENTIAL)
    run = legacy_run(imp)
    return NotificationDelivery.objects.create(
        scheduled_import=imp, run=run, event="failed", channel="email"
    )


def test_an_error_quoting_an_old_runs_text_is_raised_without_the_secret(alice, settings):
    # Given the e-mail of an old run whose text holds the secret, and a server that quotes it
    delivery = failed_run_email(alice)
    settings.EMAIL_BACKEND = f"{__name__}.QuotingServer"

    # When it is delivered (the task's body)
    with pytest.raises(TaskCrashed) as crashed:
        webhooks.deliver(delivery.pk)

    # Then the error says what happened and where, the secret hidden
    told = str(crashed.value)
    assert "SMTPDataError" in told and "in send_email" in told
    assert "HTTP 503 Basic [hidden]" in told
    assert leaks([told, repr(crashed.value)], sent_forms(CREDENTIAL)) == []


def test_an_error_without_the_secret_is_raised_as_it_is(alice, settings):
    # Given a notification's e-mail, and no mail server
    delivery = failed_run_email(alice)
    settings.EMAIL_BACKEND = f"{__name__}.AbsentServer"

    # When it is delivered, then the error is the server's own
    with pytest.raises(ConnectionRefusedError):
        webhooks.deliver(delivery.pk)
