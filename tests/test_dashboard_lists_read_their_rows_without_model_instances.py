"""The dashboard's lists (runs in progress, next runs, imports needing attention) read their
rows as values: no model instance of a run, an import or an owner is made for each row at every
view of the page and every poll of `live.json` (a third of a view's CPU at 50 rows)."""

from collections import Counter

import pytest
from django.db.models.signals import post_init
from django.utils import timezone

from schedules.models import ScheduledImport
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy(alice):
    # Two runs in progress, three imports needing attention, and their next runs
    for n in range(3):
        imp = make_import(alice, SOURCE, name=f"feed {n}", dataset=f"d{n}")
        ScheduledImport.objects.filter(pk=imp.pk).update(
            consecutive_failures=2, last_run_status="failed", last_run_at=timezone.now()
        )
        if n < 2:
            make_run(imp, "running", bytes_read=10, bytes_total=40, started_at=timezone.now())


def instances_made(client, path: str) -> Counter:
    made: Counter = Counter()

    def count(sender, **kwargs):
        made[sender._meta.model_name] += 1

    post_init.connect(count)
    try:
        response = client.get(path)
    finally:
        post_init.disconnect(count)
    assert response.status_code == 200
    return made


@pytest.mark.parametrize("path", ["/dashboard/", "/dashboard/live.json", "/dashboard/health.json"])
def test_the_dashboards_lists_make_no_model_instance_of_their_rows(admin_client, busy, path):
    client = admin_client

    # When staff open the page, or it polls (again: a schedule's words are worked out once per
    # process, from an unsaved import)
    client.get(path)
    made = instances_made(client, path)

    # Then its lists were read as values: of the models only the session and its user were made
    assert set(made) <= {"session", "user"}, made


def test_the_lists_show_what_the_rows_hold(admin_client, busy):
    live = admin_client.get("/dashboard/live.json").json()

    assert [(run["import"], run["owner"], run["percent"]) for run in live["runs"]] == [
        ("feed 0", "alice", 25.0),
        ("feed 1", "alice", 25.0),
    ]
    assert {row["name"] for row in live["attention"]} == {"feed 0", "feed 1", "feed 2"}
    assert {row["reason"] for row in live["attention"]} == {"last run failed (2 failures in a row)"}
