"""An import carries its run in progress (id, status, progress): one call tells whether it runs."""

import pytest

from tests.api_support import API, SOURCE, client_for, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def test_an_import_shows_its_running_run_with_its_progress(alice):
    # Given an import with a finished run and a running one, half read
    imp = make_import(alice, SOURCE)
    make_run(imp, "failed")
    running = make_run(imp, "running", bytes_read=50, bytes_total=100, attempts=1)
    client = client_for(alice)

    # When alice reads it, alone and in the list
    one = client.get(f"{API}/imports/{imp.pk}/").json()
    listed = client.get(f"{API}/imports/").json()["results"][0]

    # Then both show the running run in brief
    assert one["active_run"]["id"] == running.pk
    assert one["active_run"]["status"] == "running"
    assert one["active_run"]["progress"] == 0.5
    assert listed["active_run"] == one["active_run"]


def test_an_import_without_a_run_in_progress_shows_none(alice):
    imp = make_import(alice, SOURCE)
    make_run(imp, "succeeded")

    assert client_for(alice).get(f"{API}/imports/{imp.pk}/").json()["active_run"] is None


def test_the_answer_to_a_cancel_shows_no_run_once_it_ended_the_queued_one(alice):
    # Bug 4 of the API hunt: the answer showed the import's runs as read before the cancel,
    # its queued run still queued, while the run log and a GET said it was cancelled
    imp = make_import(alice, SOURCE)
    queued = make_run(imp, "queued", trigger="api")
    client = client_for(alice)

    response = client.post(f"{API}/imports/{imp.pk}/cancel")

    assert response.status_code == 200, response.content
    queued.refresh_from_db()
    assert queued.status == "cancelled"
    assert response.json()["active_run"] is None
    assert response.json() == client.get(f"{API}/imports/{imp.pk}/").json()


def test_the_answer_to_a_pause_shows_the_run_still_in_progress(alice):
    imp = make_import(alice, SOURCE)
    running = make_run(imp, "running", attempts=1)
    client = client_for(alice)

    answer = client.post(f"{API}/imports/{imp.pk}/pause").json()

    assert answer["status"] == "paused"
    assert answer["active_run"]["id"] == running.pk
    assert answer == client.get(f"{API}/imports/{imp.pk}/").json()


@pytest.mark.parametrize("holding", ["running", "retrying"])
def test_the_active_run_is_the_one_holding_the_import_not_a_tick_queued_behind_it(alice, holding):
    # A tick queued behind the run in progress (overlap: queue) was named, the newest: the API
    # said of an import 52 % through its run that it was not running (outcomes hunt).
    from schedules import services

    imp = make_import(alice, SOURCE, overlap="queue")
    holder = make_run(imp, holding, bytes_read=52, bytes_total=100, attempts=1)
    make_run(imp, "queued")
    client = client_for(alice)

    one = client.get(f"{API}/imports/{imp.pk}/").json()
    listed = client.get(f"{API}/imports/").json()["results"][0]
    with pytest.raises(services.RunAlreadyActive) as refused:
        services.enqueue_run(imp, trigger="manual", user=alice)

    assert (one["active_run"]["id"], one["active_run"]["status"]) == (holder.pk, holding)
    assert listed["active_run"] == one["active_run"]
    assert refused.value.run.pk == holder.pk
