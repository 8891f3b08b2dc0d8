"""The owner's cap asks Redis twice per run: one script takes the owner's admission lock and
reads the admitted runs, another writes them and frees the lock (tasks/fairness.py). Before,
a redis-py lock, a read, a pipeline and the lock's release took four round trips of every
small run (issue 15)."""

import pytest

from common.redis_client import client
from schedules import services
from schedules.models import ImportRun
from tasks import fairness
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = pytest.mark.django_db


def two_queued_runs(owner, csv_server) -> list[ImportRun]:
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    imports = [make_import(owner, url, name=name, dataset=name) for name in ("a", "b")]
    return [ImportRun.objects.create(scheduled_import=imp, trigger="manual") for imp in imports]


def test_a_run_under_the_cap_is_admitted_in_two_round_trips(
    alice, csv_server, settings, round_trips
):
    # Given alice with a cap of 2, one run of hers admitted a moment ago, and a queued run
    settings.MAX_RUNNING_PER_OWNER = 2
    earlier, run = two_queued_runs(alice, csv_server)
    assert fairness.admit(earlier)
    round_trips.clear()

    # When a worker asks whether the run may start
    admitted = fairness.admit(run)

    # Then it may, in two round trips to Redis, both runs now admitted, and the lock free
    assert admitted
    assert len(round_trips) == 2, round_trips
    admitted_runs = client().hgetall(f"importbeat:owner:{alice.pk}:admitted")
    assert set(admitted_runs) == {str(earlier.pk).encode(), str(run.pk).encode()}
    assert client().get(f"importbeat:owner:{alice.pk}:admit") is None


def test_a_run_over_the_cap_waits_and_leaves_the_lock_free(alice, csv_server, settings):
    # Given alice at her cap of 1 (a run admitted, not claimed yet)
    settings.MAX_RUNNING_PER_OWNER = 1
    first, second = two_queued_runs(alice, csv_server)
    assert fairness.admit(first)

    # When her second run asks
    admitted = fairness.admit(second)

    # Then it waits, noted, and the next one to ask is not kept waiting by the lock
    assert not admitted
    second.refresh_from_db()
    assert second.error_message.startswith(services.WAITING_ITS_TURN)
    assert client().get(f"importbeat:owner:{alice.pk}:admit") is None
    assert fairness.admit(first)
