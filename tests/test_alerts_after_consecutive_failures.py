"""When an import's consecutive failures reach `alert_after_failures`, its owner hears about it:
a structured log line, a webhook POST of the run summary (retried while transient, never to a
private address) and an email, once per failure streak."""

import logging

import pytest

from project.celery import app
from schedules import services
from schedules.models import ImportRun
from tests.factories import make_import
from tests.webhook_support import Hook

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hook():
    receiver = Hook()
    yield receiver
    receiver.close()


@pytest.fixture(autouse=True)
def alert_tasks_in_process(monkeypatch):
    """The alert tasks run in this process, right after the run's transaction commits, their
    retries at once. schedules sends them by name, which `task_always_eager` leaves alone, so
    the message is handed to the task here, as a worker would."""
    import tasks.tasks  # noqa: F401  (registers the tasks)

    send_task = app.send_task

    def run_alerts_here(name, args=None, kwargs=None, **options):
        if name.startswith("importbeat.send_alert_"):
            return app.tasks[name].apply(args=args, kwargs=kwargs)
        return send_task(name, args=args, kwargs=kwargs, **options)

    monkeypatch.setattr(app, "send_task", run_alerts_here)


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


def test_it_alerts_once_per_streak_and_again_after_a_success_broke_it(alice, hook, mailoutbox):
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
    imp = make_import(
        alice, "http://127.0.0.1/p.csv", alert_after_failures=1, callback_url=callback_url
    )

    with caplog.at_level(logging.ERROR, logger="importbeat.alerts"):
        fail(imp)

    assert any("alert webhook refused" in r.getMessage() for r in caplog.records)
    assert "private address" in caplog.text
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
