"""Notifications the user configures: per import, which events notify on which channels;
webhooks signed (verified here by a receiver written from the README's description) and
retried; every delivery in the import's log (`GET /imports/{id}/deliveries/`)."""

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from unittest import mock

import pytest
from django.core import mail
from django.utils import timezone

from schedules import notifications, services
from schedules.models import NotificationDelivery, ScheduledImport
from tasks import maintenance, webhooks
from tasks.errors import TransientImportError
from tests.api_support import API, SOURCE, client_for, import_body, make_run
from tests.factories import make_import
from tests.webhook_support import Hook, when_due

pytestmark = pytest.mark.django_db

TOLERANCE_SECONDS = 300


def verify(secret: str, header: str, body: bytes) -> bool:
    """The README's recipe: HMAC-SHA256 of "<t>.<body>" with the secret, compared in constant
    time, and a timestamp no older than five minutes."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    fresh = abs(time.time() - int(parts["t"])) <= TOLERANCE_SECONDS
    return fresh and hmac.compare_digest(expected.hexdigest(), parts["v1"])


@pytest.fixture
def receiver() -> Iterator[Hook]:
    hook = Hook()
    yield hook
    hook.close()


def finish(imp, status: str) -> list[NotificationDelivery]:
    """A run of `imp` ends with `status`; its notifications are delivered (the task's body)."""
    run = make_run(imp, "running", attempts=1)
    error = "" if status in ("succeeded", "partial") else "boom"
    services.finish_run(run, status, counts=services.RunCounts(), error=error)
    deliveries = list(NotificationDelivery.objects.filter(run=run).order_by("pk"))
    for delivery in deliveries:
        webhooks.deliver(delivery.pk)
    return [NotificationDelivery.objects.get(pk=d.pk) for d in deliveries]


def test_data_landed_is_a_signed_webhook_the_readme_recipe_verifies(alice, receiver):
    # Given an import that notifies "succeeded" by webhook
    client = client_for(alice)
    body = import_body(
        callback_url=receiver.url, notify_on=["succeeded"], notify_channels=["webhook"]
    )
    created = client.post(f"{API}/imports/", body, format="json").json()
    secret = created["webhook_secret"]

    # When a run succeeds
    (delivery,) = finish(ScheduledImport.objects.get(pk=created["id"]), "succeeded")

    # Then the receiver got it once, signed with the import's secret
    assert delivery.status == "delivered" and delivery.response_status == 200
    ((headers, raw),) = receiver.requests
    assert verify(secret, headers["Importbeat-Signature"], raw)
    assert not verify("another secret", headers["Importbeat-Signature"], raw)
    assert json.loads(raw)["event"] == "run.succeeded"
    assert json.loads(raw)["run"]["id"] == delivery.run_id


def test_only_the_chosen_events_notify_and_recovery_is_one_of_them(alice, receiver, settings):
    settings.EMAIL_DIGEST_SECONDS = 0  # each e-mail at once (tests/test_email_digest.py)
    imp = make_import(
        alice,
        SOURCE,
        callback_url=receiver.url,
        notify_on=["failed", "recovered"],
        notify_channels=["email", "webhook"],
    )

    failed = finish(imp, "failed")
    good = finish(imp, "succeeded")
    again = finish(imp, "succeeded")

    assert [(d.event, d.channel, d.status) for d in failed] == [
        ("failed", "email", "delivered"),
        ("failed", "webhook", "delivered"),
    ]
    assert [(d.event, d.channel) for d in good] == [
        ("recovered", "email"),
        ("recovered", "webhook"),
    ]
    assert again == []
    assert [m.subject for m in mail.outbox] == [
        "[importbeat] products: failed",
        "[importbeat] products: recovered",
    ]


def test_a_webhook_that_fails_is_retried_and_each_try_is_in_the_log(alice, receiver):
    imp = make_import(
        alice, SOURCE, callback_url=receiver.url, notify_on=["failed"], notify_channels=["webhook"]
    )
    receiver.statuses = [503]
    run = make_run(imp, "running", attempts=1)
    services.finish_run(run, "failed", error="boom")
    delivery = NotificationDelivery.objects.get(run=run)

    with pytest.raises(TransientImportError):
        webhooks.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("retrying", 1)
    (retrying,) = client_for(alice).get(f"{API}/imports/{imp.pk}/deliveries/").json()["results"]
    assert retrying["next_attempt_at"] == delivery.next_attempt_at.isoformat().replace(
        "+00:00", "Z"
    )
    when_due(delivery.pk)  # (its retry)
    webhooks.deliver(delivery.pk)

    log = client_for(alice).get(f"{API}/imports/{imp.pk}/deliveries/").json()["results"]
    assert [
        (d["status"], d["attempts"], d["response_status"], d["next_attempt_at"]) for d in log
    ] == [("delivered", 2, 200, None)]
    assert len(receiver.requests) == 2


def test_an_owner_without_email_is_told_in_the_log_how_to_set_it(alice):
    alice.email = ""
    alice.save()
    imp = make_import(alice, SOURCE, notify_on=["partial"], notify_channels=["email"])

    (delivery,) = finish(imp, "partial")

    assert delivery.status == "skipped"
    assert "PATCH /api/v1/me" in delivery.error


def test_unknown_events_or_channels_are_a_400_naming_the_valid_ones(alice):
    response = client_for(alice).post(
        f"{API}/imports/",
        import_body(notify_on=["exploded"], notify_channels=["pager"]),
        format="json",
    )

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert "failed, partial, succeeded, recovered, late" in errors["notify_on.0"][0]
    assert "email, webhook" in errors["notify_channels.0"][0]


def test_the_secret_is_shown_to_the_owner_only(alice, django_user_model):
    staff = django_user_model.objects.create_user("sam", password="x", is_staff=True)
    imp = make_import(alice, SOURCE)

    mine = client_for(alice).get(f"{API}/imports/{imp.pk}/").json()
    theirs = client_for(staff).get(f"{API}/imports/{imp.pk}/").json()

    assert len(mine["webhook_secret"]) == 64 and theirs["webhook_secret"] is None


def test_an_import_turning_late_tells_its_owner_once_by_email_and_as_asked(alice):
    imp = make_import(alice, SOURCE, notify_on=["late"], notify_channels=["email"])
    quiet = make_import(alice, SOURCE, name="quiet")
    hooked = make_import(alice, SOURCE, name="hooked", notify_on=["late"], notify_channels=[])
    ScheduledImport.objects.update(late_since=timezone.now(), missed_ticks=2)

    notifications.on_imports_late([imp.pk, quiet.pk, hooked.pk])

    # One e-mail each, whatever they asked (the late alert), in each import's log
    log = NotificationDelivery.objects.order_by("scheduled_import_id")
    assert [(d.scheduled_import_id, d.event, d.channel, d.run_id) for d in log] == [
        (imp.pk, "late", "email", None),
        (quiet.pk, "late", "email", None),
        (hooked.pk, "late", "email", None),
    ]
    webhooks.deliver(log[0].pk)
    # Gone late together, they are told in one e-mail (schedules.email_digest)
    assert [m.subject for m in mail.outbox] == ["[importbeat] 3 notifications about 3 import(s)"]
    assert [line for line in mail.outbox[0].body.splitlines() if line.startswith("- ")] == [
        f"- products is late (import {imp.pk})",
        f"- quiet is late (import {quiet.pk})",
        f"- hooked is late (import {hooked.pk})",
    ]
    assert {d.status for d in NotificationDelivery.objects.all()} == {"delivered"}


def test_a_late_email_alone_says_how_many_ticks_were_missed(alice):
    imp = make_import(alice, SOURCE)
    ScheduledImport.objects.filter(pk=imp.pk).update(
        late_since=timezone.now(), missed_ticks=7, missed_while_late=2
    )
    notifications.on_imports_late([imp.pk])

    webhooks.deliver(NotificationDelivery.objects.get().pk)

    assert [m.subject for m in mail.outbox] == ["[importbeat] products is late"]
    assert "It has missed 2 tick(s) since it turned late (7 in all)." in mail.outbox[0].body


def test_a_late_import_with_a_webhook_asked_for_is_also_posted(alice):
    imp = make_import(alice, SOURCE, notify_on=["late"], notify_channels=["webhook"],
                      callback_url="https://hooks.example.com/in")  # fmt: skip

    notifications.on_imports_late([imp.pk])

    assert sorted(NotificationDelivery.objects.values_list("event", "channel")) == [
        ("late", "email"), ("late", "webhook"),
    ]  # fmt: skip


def test_a_late_email_of_an_import_on_time_again_is_skipped_and_says_why(alice):
    imp = make_import(alice, SOURCE)
    ScheduledImport.objects.filter(pk=imp.pk).update(late_since=timezone.now())
    notifications.on_imports_late([imp.pk])
    ScheduledImport.objects.filter(pk=imp.pk).update(late_since=None)

    (delivery,) = NotificationDelivery.objects.all()
    webhooks.deliver(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == "skipped" and not mail.outbox
    assert delivery.error == "the import ran on time again before it went out"


def test_the_admin_lists_deliveries_and_edits_what_notifies(admin_client, alice):
    imp = make_import(alice, SOURCE, notify_on=["partial"], notify_channels=["email"])
    finish(imp, "partial")

    listed = admin_client.get("/admin/schedules/notificationdelivery/").content.decode()
    page = admin_client.get(f"/admin/schedules/scheduledimport/{imp.pk}/change/").content.decode()

    assert "partial" in listed and "delivered" in listed
    assert "notify_on" in page and "notify_channels" in page


def test_a_notification_whose_message_was_lost_is_sent_again_by_the_sweep(alice, settings):
    # Given a notification pending for longer than STALE_QUEUED_SECONDS, and a fresh one
    settings.STALE_QUEUED_SECONDS = 1800
    imp = make_import(alice, SOURCE)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    old = NotificationDelivery.objects.create(
        scheduled_import=imp, event="failed", channel="email", created_at=an_hour_ago
    )
    NotificationDelivery.objects.create(scheduled_import=imp, event="failed", channel="email")

    # When the sweep runs
    with mock.patch.object(notifications.current_app, "send_task") as send_task:
        swept = maintenance.sweep_runs()

    # Then only the old one's message is sent again
    assert swept["notifications"] == 1
    assert send_task.call_args.args == ("importbeat.deliver_notification",)
    assert send_task.call_args.kwargs["args"] == [old.pk]


def test_a_late_alert_message_of_an_earlier_version_is_delivered_through_the_log(alice):
    from tasks.tasks import send_late_alert

    imp = make_import(alice, SOURCE)
    ScheduledImport.objects.filter(pk=imp.pk).update(late_since=timezone.now())

    send_late_alert(imp.pk)

    (delivery,) = NotificationDelivery.objects.all()
    assert (delivery.event, delivery.channel, delivery.status) == ("late", "email", "pending")


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (
            {"notify_on": ["failed"], "notify_channels": ["webhook"]},
            "a webhook is sent to the import's callback_url, and it has none: set one, or add "
            "email",
        ),
        (
            {"notify_on": ["failed", "late"], "notify_channels": []},
            "failed, late would notify on no channel: choose email or webhook",
        ),
    ],
)
def test_notifications_that_could_reach_no_one_are_refused(alice, body, said):
    # A webhook without a callback URL made no delivery and no entry in the log: the failures
    # it was asked to report went unreported without a word
    response = client_for(alice).post(f"{API}/imports/", import_body(**body), format="json")

    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {"notify_channels": [said]}
    assert not ScheduledImport.objects.exists()


def test_removing_the_callback_its_webhooks_need_is_refused(alice):
    imp = make_import(
        alice,
        SOURCE,
        notify_on=["failed"],
        notify_channels=["webhook"],
        callback_url="https://hooks.example.com/x",
    )
    client = client_for(alice)

    refused = client.patch(f"{API}/imports/{imp.pk}/", {"callback_url": ""}, format="json")
    taken = client.patch(
        f"{API}/imports/{imp.pk}/",
        {"callback_url": "", "notify_channels": ["email"]},
        format="json",
    )

    assert refused.status_code == 400 and list(refused.json()["errors"]) == ["notify_channels"]
    assert taken.status_code == 200, taken.content


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"notify_channels": ["webhook"], "callback_url": "https://hooks.example.com/in"},
         "the import no longer notifies by email"),
        ({"notify_on": []}, "the import no longer notifies on failed"),
    ],
)  # fmt: skip
def test_an_email_waiting_to_go_out_is_skipped_once_its_import_no_longer_asks_for_it(
    alice, change, said
):
    # Given a failure e-mail waiting to go out (held for the owner's digest, or its message
    # late), then the owner turns e-mail, or the event, off on the import
    imp = make_import(alice, SOURCE, notify_on=["failed"], notify_channels=["email"])
    run = make_run(imp, "running", attempts=1)
    services.finish_run(run, "failed", counts=services.RunCounts(), error="boom")
    (delivery,) = NotificationDelivery.objects.filter(run=run)
    services.update_import(imp, **change)

    # When it is due, then it is skipped, saying why (it went out)
    webhooks.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error, mail.outbox) == ("skipped", said, [])


def test_a_deactivated_owners_imports_are_paused_and_no_email_goes_to_them(alice):
    # Given alice's active import, and an e-mail to her waiting to go out
    imp = make_import(alice, SOURCE, notify_on=["failed"], notify_channels=["email"])
    run = make_run(imp, "running", attempts=1)
    services.finish_run(run, "failed", counts=services.RunCounts(), error="boom")
    (delivery,) = NotificationDelivery.objects.filter(run=run)

    # When her account is deactivated (the admin's "active" unticked)
    alice.is_active = False
    alice.save()

    # Then her import is paused (it went on fetching, writing and mailing her for good), and
    # the e-mail is skipped, saying why
    imp.refresh_from_db()
    assert imp.status == "paused" and imp.next_run_at is None
    webhooks.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "skipped" and not mail.outbox
    assert delivery.error == "its owner's account was deactivated before it went out"
    # ... and it cannot be resumed until the account is reactivated (a resume that waited for
    # the deactivation's pause won over it)
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="reactivate the account first"):
        services.resume_import(imp)
    alice.is_active = True
    alice.save()
    assert services.resume_import(imp).status == "active"
