"""The dashboard page shows the broker's, beat's and the workers' answers that its health poll
got moments ago instead of asking them on every view: a ping of the workers waits its whole
timeout (about a second) whatever the answers, which made every page view take a second
(issue 15). The health poll itself always asks afresh."""

import pytest
from django.core.cache import cache

from schedules import dashboard, overview
from schedules.api import health

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("sam", password="x", is_staff=True))
    return client


@pytest.fixture
def pings(monkeypatch):
    """Counts the pings; the answer is kept per process, so none leaks into other tests."""
    asked = []

    def check_workers():
        asked.append(1)
        return {"ok": True, "count": 1, "workers": [f"worker{len(asked)}@bench"], "broken": []}

    monkeypatch.setattr(health, "check_workers", check_workers)
    cache.delete(overview.OUTSIDE_KEY)
    yield asked
    cache.delete(overview.OUTSIDE_KEY)


def test_the_page_shows_the_answer_of_the_last_poll(staff_client, pings):
    staff_client.get("/dashboard/health.json")

    html = staff_client.get("/dashboard/").content.decode()

    assert len(pings) == 1
    assert "1 answering: worker1@bench" in html


def test_the_page_asks_again_once_that_answer_is_older_than_a_poll(
    staff_client, pings, monkeypatch
):
    staff_client.get("/dashboard/health.json")
    monkeypatch.setattr(dashboard, "HEALTH_POLL_SECONDS", 0)

    html = staff_client.get("/dashboard/").content.decode()

    assert len(pings) == 2
    assert "worker2@bench" in html


def test_the_health_poll_always_asks_the_workers(staff_client, pings):
    staff_client.get("/dashboard/health.json")
    data = staff_client.get("/dashboard/health.json").json()

    assert len(pings) == 2
    assert "worker2@bench" in next(i["text"] for i in data["health"] if i["name"] == "workers")
