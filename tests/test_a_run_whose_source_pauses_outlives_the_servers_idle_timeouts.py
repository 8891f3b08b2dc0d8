"""The operator's `idle_session_timeout` (PostgreSQL 14+, hardening advice beside
`statement_timeout`; here 2 s, on this test's database only). A worker sets its own
`statement_timeout` and `lock_timeout` whatever the server says (project/worker_connections.py:
"such a limit ended a big file's COPY ... and met the same end at every retry"), and now this one
too.

Regression (database hunt): a run of an import whose dataset already holds a file spools the
whole download first, its connection idle between progress writes, and a source that paused
longer than the limit between chunks had the run's connection ended, at every attempt: "the
run lost its connection to importbeat's database; it is not retried: its 1 retries are used
up"."""

import psycopg
import pytest
from django.conf import settings

from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, big_csv

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def set_idle_session_timeout(value: str | None) -> None:
    params = settings.DATABASES["default"]
    name = params["NAME"]
    with psycopg.connect(
        dbname="postgres", user=params["USER"], host=params["HOST"],
        port=params["PORT"] or None, autocommit=True,
    ) as other:  # fmt: skip
        if value is None:
            other.execute(f'ALTER DATABASE "{name}" RESET idle_session_timeout')
        else:
            other.execute(f"ALTER DATABASE \"{name}\" SET idle_session_timeout = '{value}'")


@pytest.fixture
def idle_limit():
    yield set_idle_session_timeout
    set_idle_session_timeout(None)


def test_a_run_is_not_cut_by_the_servers_idle_session_timeout(
    alice, csv_server, processes, idle_limit
):
    # Given a dataset that holds what a first run of the import made of it
    body = big_csv(8_000)
    url = csv_server.serve("/p.csv", body)
    imp = make_import(alice, url, max_retries=1, retry_backoff_seconds=1,
                      retry_backoff_max_seconds=1, timeout_seconds=120)  # fmt: skip
    idle_limit("2s")
    processes.start("worker", **FAST)
    first = services.enqueue_run(imp, trigger="manual", user=alice)
    first = wait_for(
        lambda: ImportRun.objects.filter(pk=first.pk, finished_at__isnull=False).first(),
        30, what=processes.logs(),
    )  # fmt: skip
    assert first.status == "succeeded"

    # When the server ends sessions idle 2 s, and a new file arrives in slow chunks (3 s apart)
    csv_server.serve("/p.csv", body.replace(b"item 1,", b"item one,"), chunk_delay=3)
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    run = wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(),
        90, what="the run to end\n" + processes.logs(),
    )  # fmt: skip
    errors = [a["error"] for a in run.error_details.get("attempts", [])]
    print(f"\nended: {run.status} attempts={run.attempts} error={run.error_message!r} {errors}")
    assert run.status == "succeeded", run.error_message
