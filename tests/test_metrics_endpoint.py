"""Prometheus `/metrics` on the web process: runs by import and status, rows by kind, a run
duration histogram, late imports, queue depth and beat, behind Flower's credentials."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from project.devservices import free_port
from schedules import services
from schedules.models import ImportRun, NotificationDelivery
from tasks import turns
from tasks.maintenance import delete_old_runs
from tests.api_support import make_run
from tests.conftest import answers, wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import run_now
from tests.webhook_support import forget_redis_keys

pytestmark = pytest.mark.django_db

AUTH = ("ops", "s3cret-metrics")


@pytest.fixture
def scrape(client, settings):
    settings.FLOWER_BASIC_AUTH = ":".join(AUTH)
    token = base64.b64encode(":".join(AUTH).encode()).decode()

    def get() -> dict[tuple[str, tuple], float]:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {token}")
        assert response.status_code == 200, response.content
        return samples(response.content.decode())

    return get


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a Prometheus exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float | None:
    return scraped.get((name, tuple(sorted(labels.items()))))


def test_the_counters_move_with_real_runs(alice, csv_server, scrape):
    # Given an import that has not run yet
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    who = {"import_id": str(imp.pk), "import": "products", "owner": "alice"}
    before = scrape()
    assert value(before, "importbeat_runs_total", **who, status="succeeded") is None

    # When it runs twice (a first load, then the same file) and its source then breaks
    run_now(imp)
    run_now(imp)
    csv_server.routes.pop("/p.csv")
    run_now(imp)
    after = scrape()

    # Then runs are counted by status, rows by kind, durations in the histogram
    assert value(after, "importbeat_runs_total", **who, status="succeeded") == 2
    assert value(after, "importbeat_runs_total", **who, status="failed") == 1
    assert value(after, "importbeat_rows_total", **who, kind="inserted") == 3
    assert value(after, "importbeat_rows_total", **who, kind="unchanged") == 3
    assert value(after, "importbeat_rows_total", **who, kind="read") == 6
    assert value(after, "importbeat_run_duration_seconds_count", **who) == 3
    assert value(after, "importbeat_run_duration_seconds_bucket", **who, le="+Inf") == 3
    assert value(after, "importbeat_import_consecutive_failures", **who) == 1


def test_a_65_ms_run_lands_in_the_100_ms_bucket_and_skipped_runs_count_too(alice, scrape):
    imp = make_import(alice, "https://example.com/p.csv")
    who = {"import_id": str(imp.pk), "import": "products", "owner": "alice"}

    make_run(imp, "succeeded", duration_ms=65)
    make_run(imp, "skipped", duration_ms=None)
    scraped = scrape()

    assert value(scraped, "importbeat_run_duration_seconds_bucket", **who, le="0.1") == 1
    assert value(scraped, "importbeat_run_duration_seconds_sum", **who) == pytest.approx(0.065)
    assert value(scraped, "importbeat_runs_total", **who, status="skipped") == 1


def test_a_run_is_counted_once_when_it_ends_not_at_every_save(alice, scrape):
    imp = make_import(alice, "https://example.com/p.csv")
    who = {"import_id": str(imp.pk), "import": "products", "owner": "alice"}
    run = make_run(imp, "queued")

    services.finish_run(run, ImportRun.Status.FAILED, error="boom")
    ImportRun.objects.filter(pk=run.pk).update(status="failed", error_message="again")

    assert value(scrape(), "importbeat_runs_total", **who, status="failed") == 1


def test_retention_deleting_old_runs_never_lowers_a_counter(alice, scrape):
    from datetime import timedelta

    from django.utils import timezone

    imp = make_import(alice, "https://example.com/p.csv")
    who = {"import_id": str(imp.pk), "import": "products", "owner": "alice"}
    make_run(imp, "succeeded", queued_at=timezone.now() - timedelta(days=400))

    assert delete_old_runs()["deleted"] == 1

    assert value(scrape(), "importbeat_runs_total", **who, status="succeeded") == 1


def test_the_gauges_show_runs_in_progress_imports_late_imports_queue_and_beat(alice, scrape):
    imp = make_import(alice, "https://example.com/p.csv")
    make_run(imp, "running")

    scraped = scrape()

    assert value(scraped, "importbeat_runs_in_progress", status="running") == 1
    assert value(scraped, "importbeat_runs_in_progress", status="queued") == 0
    assert value(scraped, "importbeat_imports", status="active") == 1
    assert value(scraped, "importbeat_imports_late") == 0
    assert value(scraped, "importbeat_queue_depth", queue="celery") is not None
    assert value(scraped, "importbeat_beat_leader") == 0


def test_it_asks_for_flowers_credentials(client, settings):
    settings.FLOWER_BASIC_AUTH = "ops:s3cret-metrics,viewer:other-secret"
    basic = "Basic " + base64.b64encode(b"viewer:other-secret").decode()
    wrong = "Basic " + base64.b64encode(b"ops:guess").decode()

    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"] == 'Basic realm="importbeat metrics"'
    assert client.get("/metrics", HTTP_AUTHORIZATION=wrong).status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic !!").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=basic).status_code == 200


def test_outside_development_without_credentials_metrics_are_off(client, settings):
    settings.FLOWER_BASIC_AUTH = ""
    settings.DEBUG = False

    response = client.get("/metrics")

    assert response.status_code == 403
    assert b"set FLOWER_BASIC_AUTH" in response.content


@pytest.mark.django_db(transaction=True)
@pytest.mark.processes
def test_the_web_process_serves_counters_that_move_after_a_worker_ran_an_import(
    alice, csv_server, processes
):
    # Given the web and worker processes of the Procfile
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes.start("web", PORT=str(port), WEB_CONCURRENCY="1", FLOWER_BASIC_AUTH=":".join(AUTH))
    processes.start("worker")
    wait_for(lambda: answers(base), 30, what="web\n" + processes.logs())
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    who = {"import_id": str(imp.pk), "import": "products", "owner": "alice"}
    before = samples(requests.get(f"{base}/metrics", auth=AUTH, timeout=10).text)

    # When the worker runs the import
    run = services.enqueue_run(imp, trigger="api", user=alice)
    wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, status="succeeded").exists(),
        60,
        what="the run to succeed\n" + processes.logs(),
    )

    # Then a scrape of the web process shows the counters moved
    after = samples(requests.get(f"{base}/metrics", auth=AUTH, timeout=10).text)
    assert value(before, "importbeat_runs_total", **who, status="succeeded") is None
    assert value(after, "importbeat_runs_total", **who, status="succeeded") == 1
    assert value(after, "importbeat_rows_total", **who, kind="inserted") == 3
    assert requests.get(f"{base}/metrics", timeout=10).status_code == 401


def test_the_notifications_waiting_and_the_oldest_show_for_every_import_at_once(alice, scrape):
    # Given nothing to deliver, then nothing waits, and no oldest
    imp = make_import(alice, "https://example.com/p.csv")
    assert value(scrape(), "importbeat_notifications_waiting", status="pending") == 0
    assert value(scrape(), "importbeat_notifications_oldest_waiting_timestamp_seconds") is None

    # When a mail server has taken nothing for an hour (one retrying, one held, one pending)
    hour_ago = timezone.now() - timedelta(hours=1)
    for status in ("retrying", "held", "pending", "delivered"):
        NotificationDelivery.objects.create(scheduled_import=imp, event="failed", channel="email",
                                            status=status, created_at=hour_ago)  # fmt: skip

    # Then the gauges say so, whichever import they belong to
    scraped = scrape()
    for status in ("retrying", "held", "pending"):
        assert value(scraped, "importbeat_notifications_waiting", status=status) == 1
    oldest = value(scraped, "importbeat_notifications_oldest_waiting_timestamp_seconds")
    assert oldest == pytest.approx(hour_ago.timestamp())


def test_the_notifications_parked_behind_a_turn_show(alice, scrape):
    # Given nothing parked, then none shows
    assert value(scrape(), "importbeat_notifications_parked", turn="mail") == 0
    assert value(scrape(), "importbeat_notifications_parked", turn="owner") == 0

    # When two e-mails wait behind the mail relay's turn, and a webhook behind its owner's
    job = turns.Job("importbeat.deliver_notification", "t-1", 1, 0)
    with turns.turn(turns.MAIL, job), turns.turn(turns.of_owner(alice.pk), job):
        for key in (turns.MAIL, turns.MAIL, turns.of_owner(alice.pk)):
            with pytest.raises(turns.Parked), turns.turn(key, job):
                pass
        scraped = scrape()
        forget_redis_keys("importbeat:turns:*")  # nothing to hand on when the turns end

    # Then the gauge says so, by turn
    assert value(scraped, "importbeat_notifications_parked", turn="mail") == 2
    assert value(scraped, "importbeat_notifications_parked", turn="owner") == 1
