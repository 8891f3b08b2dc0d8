"""A pause ends `skipped` the import's runs its schedule queued (a tick's, a catch-up) that no
worker has started, saying so; a manual or API run, and a run already running or retrying, go
on. The same for one import (services.pause_import) and for many (the admin's action).

Regression (interval hunt, note): a scheduled run queued before a pause (a backlog, a run
waiting its turn) was taken by a worker after it, fetched the source and wrote, its retries
too, after the pause had answered 200.
"""

from __future__ import annotations

import logging

import pytest

from schedules import services, statuses
from schedules.models import ImportRun, ScheduledImport
from tasks import runner
from tests.api_support import make_run
from tests.bound_task import BoundTask
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = pytest.mark.django_db(transaction=True)

WORDS = "skipped: the import was paused before this run started"


def pause_one(imp: ScheduledImport) -> None:
    services.pause_import(ScheduledImport.objects.get(pk=imp.pk))


def pause_many(imp: ScheduledImport) -> None:
    statuses.change_statuses([imp.pk], "paused", from_statuses=["active"])


@pytest.mark.parametrize("pause", [pause_one, pause_many])
def test_a_pause_skips_the_scheduled_runs_not_yet_started(alice, csv_server, caplog, pause):
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    imp = make_import(alice, url, interval_seconds=3600)
    other = make_import(alice, url, name="other", dataset="other", interval_seconds=3600)
    # Given runs of the imports waiting: a schedule's and a catch-up (queued, not started),
    # a manual one and an API one queued, one running and one retrying (one a time an import)
    tick, catchup = make_run(imp, "queued"), make_run(imp, "queued", trigger="catchup")
    manual, api = make_run(imp, "queued", trigger="manual"), make_run(imp, "queued", trigger="api")
    running = make_run(imp, "running", started_at=tick.queued_at)
    retrying = make_run(other, "retrying", started_at=tick.queued_at)

    # When their owner pauses them
    with caplog.at_level(logging.INFO, logger="importbeat.runs"):
        pause(imp)
        pause(other)

    # Then the schedule's runs are skipped, saying why, each in the runs' log
    now = {run.pk: (run.status, run.error_message) for run in ImportRun.objects.all()}
    assert now[tick.pk] == now[catchup.pk] == ("skipped", WORDS)
    logged = [r.getMessage() for r in caplog.records if "was paused before" in r.getMessage()]
    assert len(logged) == 2 and f"run={tick.pk} trigger=schedule" in logged[0] + logged[1]
    # ... the others go on
    others = (manual, api, running, retrying)
    assert [now[run.pk][0] for run in others] == ["queued", "queued", "running", "retrying"]
    # ... and a worker that takes the skipped tick's message after the pause fetches nothing
    runner.execute(tick.pk, BoundTask())
    assert ImportRun.objects.get(pk=tick.pk).status == "skipped"
    assert csv_server.hits.get("/p.csv", 0) == 0
