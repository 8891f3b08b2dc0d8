"""HTTP answers are classified: 5xx and 429 are transient (retried), other 4xx permanent."""

import pytest

from schedules.models import ImportRun
from tasks import runner
from tasks.errors import PermanentImportError, TransientImportError
from tasks.fetch import open_source
from tests.bound_task import BoundTask, Retried
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_a_server_error_or_429_is_transient(csv_server, status):
    url = csv_server.serve("/p.csv", b"busy", status=status)

    with pytest.raises(TransientImportError, match=f"HTTP {status}"):  # noqa: SIM117
        with open_source(url):
            pass


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_a_client_error_is_permanent(csv_server, status):
    url = csv_server.serve("/p.csv", b"no", status=status)

    with pytest.raises(PermanentImportError, match=f"HTTP {status}"):  # noqa: SIM117
        with open_source(url):
            pass


def test_a_503_is_retried_with_backoff_and_a_404_fails_at_once(alice, csv_server):
    # Given one import behind a 503 and one behind a 404
    busy = make_import(alice, csv_server.serve("/busy.csv", b"", status=503), name="busy")
    gone = make_import(alice, csv_server.serve("/gone.csv", b"", status=404), name="gone")
    busy_run = ImportRun.objects.create(scheduled_import=busy, trigger="manual")
    gone_run = ImportRun.objects.create(scheduled_import=gone, trigger="manual")
    task = BoundTask()

    # When a worker executes both
    with pytest.raises(Retried):
        runner.execute(busy_run.pk, task)
    runner.execute(gone_run.pk, task)

    # Then the 503 run waits for a retry within the backoff, the 404 run failed at once
    busy_run.refresh_from_db()
    gone_run.refresh_from_db()
    assert busy_run.status == "retrying"
    assert "HTTP 503" in busy_run.error_details["attempts"][0]["error"]
    assert 0 <= task.countdowns[0] <= busy.retry_backoff_seconds
    assert (gone_run.status, gone_run.attempts) == ("failed", 1)
    assert "HTTP 404" in gone_run.error_message


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("stop", "words"),
    [
        ("cancel the import", "cancelled with its import"),
        ("deactivate its owner", "cancelled: its owner's account was deactivated"),
    ],
)
def test_a_transient_failure_after_its_import_was_stopped_is_no_other_chance(
    alice, csv_server, stop, words
):
    # Given an import cancelled, or its owner's account deactivated, while its run fetches (the
    # running attempt finishes), whose server then answers 503: the run was retried, fetching
    # the source again after the cancel, or after the account was closed
    from django.contrib.auth import get_user_model
    from django.db import connections

    from schedules import services
    from schedules.models import ScheduledImport
    from tests.conftest import Route

    def stop_then_answer_busy() -> Route:
        if stop == "cancel the import":
            services.cancel_import(ScheduledImport.objects.get(pk=imp.pk))
        else:
            owner = get_user_model().objects.get(pk=alice.pk)
            owner.is_active = False
            owner.save()
        connections.close_all()
        return Route(b"busy", status=503)

    imp = make_import(alice, csv_server.base_url + "/p.csv", max_retries=3)
    csv_server.routes["/p.csv"] = stop_then_answer_busy
    run = ImportRun.objects.create(scheduled_import=imp, trigger="manual")
    task = BoundTask()

    runner.execute(run.pk, task)

    run.refresh_from_db()
    assert (run.status, run.attempts, task.countdowns) == ("cancelled", 1, [])
    assert run.error_message.startswith(f"{words} (the server answered HTTP 503")
