"""When an import's consecutive failures reach `alert_after_failures`, its owner hears about it:
a structured log line, a webhook POST of the run summary (retried while transient, never to a
private address) and an email, once per failure streak; each is a delivery of the event
`alert` in the import's notification log, so one that could not reach the owner shows there."""

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from project.celery import app
from schedules import notifications, services
from schedules.models import ImportRun, NotificationDelivery, ScheduledImport
from tests.factories import make_import, make_import_saved_earlier
from tests.webhook_support import Hook, when_due

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hook():
    receiver = Hook()
    yield receiver
    receiver.close()


def run_deliveries_here(monkeypatch) -> None:
    """The deliveries run in this process, right after the run's transaction commits, their
    retries at once, each when it is due (webhook_support.when_due: a retry that comes before
    its countdown ends sends nothing). schedules sends them by name, which
    `task_always_eager` leaves alone, so the message is handed to the task here, as a worker
    would."""
    import tasks.tasks  # noqa: F401  (registers the tasks)

    send_task = app.send_task
    task = app.tasks["importbeat.deliver_notification"]
    apply = task.apply

    def apply_when_due(args=None, kwargs=None, **options):
        # (Celery applies an eager task's retry at once, through its signature)
        if options.get("countdown") is not None:
            when_due(args[0])
        return apply(args, kwargs, **options)

    monkeypatch.setattr(task, "apply", apply_when_due)

    def deliver_here(name, args=None, kwargs=None, **options):
        if name == "importbeat.deliver_notification":
            return app.tasks[name].apply(
                args=args, kwargs=kwargs, retries=options.get("retries", 0)
            )
        return send_task(name, args=args, kwargs=kwargs, **options)

    monkeypatch.setattr(app, "send_task", deliver_here)


@pytest.fixture(autouse=True)
def alert_tasks_in_process(monkeypatch):
    run_deliveries_here(monkeypatch)


def fail(imp, status="failed") -> ImportRun:
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="schedule", status="running", attempts=1
    )
    return services.finish_run(run, status, error="the server answered HTTP 404 Not Found")


def succeed(imp) -> ImportRun:
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="schedule", status="running", attempts=1
    )
    return services.finish_run(run, "succeeded", counts=services.RunCounts())


def test_reaching_the_threshold_logs_posts_the_summary_and_mails_the_owner(
    alice, hook, mailoutbox, caplog
):
    imp = make_import(
        alice, "http://127.0.0.1/p.csv", alert_after_failures=3, callback_url=hook.url
    )

    with caplog.at_level(logging.ERROR, logger="importbeat.alerts"):
        fail(imp)
        fail(imp)
        assert not hook.received and not mailoutbox
        third = fail(imp, status="timed_out")

    alert_lines = [r.getMessage() for r in caplog.records if "import alert" in r.getMessage()]
    assert len(alert_lines) == 1
    assert (
        f"import={imp.pk} run={third.pk} status=timed_out consecutive_failures=3"
        in (alert_lines[0])
    )
    assert len(hook.received) == 1
    summary = hook.received[0]
    assert summary["event"] == "import.failing"
    assert summary["import"]["id"] == imp.pk
    assert summary["import"]["consecutive_failures"] == 3
    assert summary["run"]["id"] == third.pk
    assert summary["run"]["status"] == "timed_out"
    assert "404" in summary["run"]["error_message"]
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["alice@example.com"]
    assert "failed 3 times in a row" in mailoutbox[0].subject


def test_it_alerts_once_per_streak_and_again_after_a_success_broke_it(
    alice, hook, mailoutbox, settings
):
    settings.EMAIL_DIGEST_SECONDS = 0  # each e-mail at once (tests/test_email_digest.py)
    imp = make_import(
        alice, "http://127.0.0.1/p.csv", alert_after_failures=2, callback_url=hook.url
    )

    for _ in range(4):
        fail(imp)
    assert (len(hook.received), len(mailoutbox)) == (1, 1)

    succeed(imp)
    fail(imp)
    fail(imp)
    assert (len(hook.received), len(mailoutbox)) == (2, 2)


def test_a_transient_webhook_failure_is_retried_until_it_is_delivered(alice, mailoutbox):
    receiver = Hook(statuses=[503, 429])
    try:
        imp = make_import(
            alice, "http://127.0.0.1/p.csv", alert_after_failures=1, callback_url=receiver.url
        )
        fail(imp)
    finally:
        receiver.close()
    assert len(receiver.received) == 3  # 503, 429, then 200
    assert len(mailoutbox) == 1  # the email is its own task: never repeated by webhook retries


def test_a_webhook_answering_4xx_is_not_retried(alice, mailoutbox):
    receiver = Hook(statuses=[410])
    try:
        imp = make_import(
            alice, "http://127.0.0.1/p.csv", alert_after_failures=1, callback_url=receiver.url
        )
        fail(imp)
    finally:
        receiver.close()
    assert len(receiver.received) == 1


@pytest.mark.parametrize(
    "callback_url", ["http://10.20.30.40/hook", "http://169.254.169.254/latest/meta-data/"]
)
def test_a_callback_on_a_private_address_is_refused_but_the_email_goes_out(
    alice, mailoutbox, caplog, callback_url
):
    imp = make_import_saved_earlier(
        alice, "http://127.0.0.1/p.csv", alert_after_failures=1, callback_url=callback_url
    )

    fail(imp)

    webhook = NotificationDelivery.objects.get(scheduled_import=imp, channel="webhook")
    assert (webhook.event, webhook.status, webhook.attempts) == ("alert", "failed", 1)
    assert "private address" in webhook.error
    assert len(mailoutbox) == 1


def test_no_alert_when_alert_after_failures_is_zero(alice, hook, mailoutbox):
    imp = make_import(
        alice, "http://127.0.0.1/p.csv", alert_after_failures=0, callback_url=hook.url
    )
    for _ in range(3):
        fail(imp)
    assert not hook.received and not mailoutbox


def test_a_success_is_never_alerted(alice, hook, mailoutbox):
    imp = make_import(alice, "http://127.0.0.1/p.csv", alert_after_failures=1)
    succeed(imp)
    assert not mailoutbox


def test_each_alert_is_in_the_notification_log_with_how_it_went(alice, hook, mailoutbox):
    imp = make_import(
        alice, "http://127.0.0.1/p.csv", alert_after_failures=1, callback_url=hook.url
    )

    run = fail(imp)

    log = {d.channel: d for d in NotificationDelivery.objects.filter(scheduled_import=imp)}
    assert {(c, d.event, d.status, d.run_id) for c, d in log.items()} == {
        ("email", "alert", "delivered", run.pk), ("webhook", "alert", "delivered", run.pk),
    }  # fmt: skip
    assert (log["email"].target, log["webhook"].response_status) == ("alice@example.com", 200)


def test_an_owner_without_an_address_sees_the_alert_skipped_and_why(alice, mailoutbox):
    # Before, only the worker's log said that the alert e-mail went nowhere.
    alice.email = ""
    alice.save()
    imp = make_import(alice, "http://127.0.0.1/p.csv", alert_after_failures=1)

    fail(imp)

    [email] = NotificationDelivery.objects.filter(scheduled_import=imp)
    assert (email.event, email.channel, email.status) == ("alert", "email", "skipped")
    assert email.error == "you have no e-mail address (set it with PATCH /api/v1/me)"
    assert not mailoutbox


def test_an_alert_queued_while_the_broker_was_down_is_sent_by_the_sweep(
    alice, mailoutbox, monkeypatch
):
    # Given a broker that refuses the alert's message when the run ends
    def broker_down(name, args=None, kwargs=None, **options):
        raise ConnectionError("broker down")

    monkeypatch.setattr(app, "send_task", broker_down)
    imp = make_import(alice, "http://127.0.0.1/p.csv", alert_after_failures=1)
    fail(imp)
    [pending] = NotificationDelivery.objects.filter(scheduled_import=imp)
    assert pending.status == "pending" and not mailoutbox
    monkeypatch.undo()

    # When the sweep looks for pending notifications
    run_deliveries_here(monkeypatch)
    notifications.resend_lost(stale_before=timezone.now() + timedelta(seconds=1))

    # Then the alert goes out and its log says so
    pending.refresh_from_db()
    assert pending.status == "delivered" and len(mailoutbox) == 1


def test_a_message_of_the_earlier_alert_tasks_is_delivered_through_the_log(alice, mailoutbox):
    # Given an alert message an earlier version queued before it stopped (one per channel)
    from tasks.tasks import send_alert_email

    imp = make_import(alice, "http://127.0.0.1/p.csv", alert_after_failures=0)
    run = fail(imp)

    # When a worker of this version takes it
    send_alert_email.apply(args=[run.pk])

    # Then the owner is mailed, and the log says so
    [email] = NotificationDelivery.objects.filter(scheduled_import=imp)
    assert (email.event, email.channel, email.status) == ("alert", "email", "delivered")
    assert len(mailoutbox) == 1


def test_an_edit_read_before_a_run_ended_keeps_that_runs_counts_and_alerts_once(
    alice, hook, mailoutbox, settings
):
    # An edit (API, admin) reads the import, a run ends, then the edit saves: the whole row was
    # written back as read, the run lost from the counts, and its streak alerted again
    settings.EMAIL_DIGEST_SECONDS = 0
    imp = make_import(
        alice, "http://127.0.0.1/p.csv", alert_after_failures=3, callback_url=hook.url
    )
    fail(imp)
    fail(imp)
    read_by_the_edit = ScheduledImport.objects.get(pk=imp.pk)
    fail(imp)  # the third: the alert
    tick = ScheduledImport.objects.get(pk=imp.pk).next_run_at

    services.update_import(read_by_the_edit, description="edited meanwhile")
    fail(imp)

    imp.refresh_from_db()
    assert (imp.total_runs, imp.failed_runs, imp.consecutive_failures) == (4, 4, 4)
    assert imp.description == "edited meanwhile" and imp.next_run_at == tick
    assert (len(hook.received), len(mailoutbox)) == (1, 1)


def test_a_threshold_lowered_during_a_streak_alerts_at_the_next_failure_once(alice, mailoutbox):
    # It never met the count again: 24 failures in a row, and no alert
    imp = make_import(alice, "http://127.0.0.1/p.csv", alert_after_failures=10)
    for _ in range(4):
        fail(imp)
    services.update_import(imp, alert_after_failures=3)

    runs = [fail(imp) for _ in range(5)]

    alerts = NotificationDelivery.objects.filter(event="alert")
    assert [delivery.run_id for delivery in alerts] == [runs[0].pk]
    assert runs[0].error_details["alerted"] is True


def test_a_threshold_raised_after_its_alert_does_not_alert_the_same_streak_again(alice):
    imp = make_import(alice, "http://127.0.0.1/p.csv", alert_after_failures=3)
    for _ in range(3):
        fail(imp)
    services.update_import(imp, alert_after_failures=5)

    for _ in range(3):
        fail(imp)
    assert NotificationDelivery.objects.filter(event="alert").count() == 1

    # ... and the next streak alerts again
    succeed(imp)
    for _ in range(5):
        fail(imp)
    assert NotificationDelivery.objects.filter(event="alert").count() == 2
