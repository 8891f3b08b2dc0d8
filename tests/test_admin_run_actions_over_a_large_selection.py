"""Cancel and Retry now over a selection across the pages (hunt "surfaces", bug 2): each run
took a service call and each refusal a clause, so that "select all" of 2,000 queued and 2,000
succeeded runs took 25 s in one request and said 160 KB at the top of the next page. The runs
an action applies to are told apart in SQL, the others counted and at most 20 named, and one
action acts on at most RUNS_PER_ACTION runs, saying how many it left."""

import re

import pytest

from schedules import admin as schedules_admin
from schedules import services
from schedules.models import ImportRun
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db

RUNS = "/admin/schedules/importrun/"


def act_on_all(client, action: str):
    """The action on every run, as "Select all N import runs" asks it."""
    one = ImportRun.objects.first()
    return client.post(
        RUNS,
        {"action": action, "select_across": "1", "index": "0", "_selected_action": [one.pk]},
        follow=True,
    )


def shown_messages(response) -> list[str]:
    return re.findall(
        r'<li class="(?:success|warning|error)">(.*?)</li>', response.content.decode(), re.S
    )


@pytest.fixture
def calls(monkeypatch):
    """How many runs each service was asked about."""
    counted = {"cancel_run": 0, "retry_run": 0}
    for name in counted:
        real = getattr(services, name)

        def counting(*args, _real=real, _name=name, **kwargs):
            counted[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(services, name, counting)
    return counted


def test_a_cancel_of_every_run_asks_only_about_the_waiting_ones_and_names_twenty_others(
    admin_client, alice, calls
):
    # Given three queued runs among 25 that succeeded
    imp = make_import(alice, SOURCE)
    succeeded = [make_run(imp, "succeeded") for _ in range(25)]
    queued = [make_run(imp, "queued") for _ in range(3)]

    # When Cancel is chosen for every run
    said = shown_messages(act_on_all(admin_client, "cancel_runs"))

    # Then the queued runs are cancelled, each through the service, and no other run is asked
    assert set(ImportRun.objects.filter(status="cancelled").values_list("pk", flat=True)) == {
        run.pk for run in queued
    }
    assert calls["cancel_run"] == 3
    # and twenty of the others are named, the rest counted
    assert "Cancelled 3 run(s)." in said
    [refused] = [m for m in said if m.startswith("Not done")]
    assert len(re.findall(r"run \d+ is succeeded", refused)) == 20
    assert "and 5 more" in refused and "can be cancelled" in refused
    assert {int(pk) for pk in re.findall(r"run (\d+)", refused)} <= {r.pk for r in succeeded}


def test_retry_now_of_every_run_asks_only_about_the_failed_ones(admin_client, alice, calls):
    # Given three failed runs, each of its own import, among 25 that succeeded
    failed = [
        make_run(make_import(alice, SOURCE, name=f"feed {n}", dataset=f"feed{n}"), "failed")
        for n in range(3)
    ]
    imp = make_import(alice, SOURCE)
    for _ in range(25):
        make_run(imp, "succeeded")

    said = shown_messages(act_on_all(admin_client, "retry_runs"))

    assert calls["retry_run"] == 3
    assert set(
        ImportRun.objects.filter(retry_of__isnull=False).values_list("retry_of", flat=True)
    ) == {run.pk for run in failed}
    assert "Queued 3 retry run(s)." in said
    [refused] = [m for m in said if m.startswith("Not done")]
    assert "and 5 more" in refused and "can be retried" in refused


def test_one_action_cancels_so_many_runs_and_says_how_many_it_left(
    admin_client, alice, monkeypatch
):
    # Given five queued runs, and an action that takes two at most
    monkeypatch.setattr(schedules_admin, "RUNS_PER_ACTION", 2, raising=False)
    imp = make_import(alice, SOURCE)
    for _ in range(5):
        make_run(imp, "queued")

    # When Cancel is chosen for every run, twice
    first = shown_messages(act_on_all(admin_client, "cancel_runs"))

    # Then two are cancelled, and the message says three are left for the next choice
    assert ImportRun.objects.filter(status="cancelled").count() == 2
    assert "Cancelled 2 run(s)." in first
    assert any(
        m.startswith("3 more run(s) of the selection are still to be cancelled") for m in first
    ), first

    act_on_all(admin_client, "cancel_runs")
    assert ImportRun.objects.filter(status="cancelled").count() == 4


def test_retry_now_chosen_again_retries_the_rest_of_the_selection(admin_client, alice, monkeypatch):
    # A retried run stays failed: chosen again, the same first runs were retried at every
    # choice and the rest never
    monkeypatch.setattr(schedules_admin, "RUNS_PER_ACTION", 2, raising=False)
    failed = [make_run(make_import(alice, SOURCE, name=f"i{n}"), "failed") for n in range(5)]

    for _choice in range(3):
        act_on_all(admin_client, "retry_runs")
        ImportRun.objects.filter(retry_of__isnull=False).update(status="succeeded")

    retried = list(
        ImportRun.objects.filter(retry_of__isnull=False).values_list("retry_of", flat=True)
    )
    assert sorted(retried) == sorted(run.pk for run in failed)


def test_cancel_chosen_again_asks_the_rest_of_the_selection_to_stop(
    admin_client, alice, monkeypatch
):
    # A run asked to stop stays running until its safe point: chosen again, the same ones were
    # asked again, said "Cancelled", and the rest never
    monkeypatch.setattr(schedules_admin, "RUNS_PER_ACTION", 2, raising=False)
    running = [make_run(make_import(alice, SOURCE, name=f"i{n}"), "running") for n in range(4)]

    for _choice in range(2):
        act_on_all(admin_client, "cancel_runs")

    asked = ImportRun.objects.filter(
        pk__in=[r.pk for r in running], cancel_requested_at__isnull=False
    )
    assert asked.count() == 4


def test_retry_now_of_a_run_retried_already_names_its_retry(admin_client, alice):
    # It said "Not done: run 1 is failed" (being failed, the reason a failed run cannot be
    # retried), while the API retried the same run (review): one rule, said the same.
    from tests.api_support import API, client_for, reset_throttle

    reset_throttle("manual_run", alice.pk)
    failed = make_run(make_import(alice, SOURCE), "failed")
    retry = make_run(failed.scheduled_import, "failed")
    ImportRun.objects.filter(pk=retry.pk).update(retry_of=failed)

    said = " ".join(shown_messages(act_on_all(admin_client, "retry_runs")))
    api = client_for(alice).post(f"{API}/runs/{failed.pk}/retry")

    assert f"run {failed.pk} was retried already, as run {retry.pk}" in said, said
    assert f"run {failed.pk} is failed" not in said
    assert api.status_code == 409
    assert api.json()["detail"] == (
        f"run {failed.pk} was retried already, as run {retry.pk}: retry that one if it failed too"
    )
    assert ImportRun.objects.filter(retry_of=retry).count() == 1  # the retry itself retried


@pytest.mark.parametrize("ended", ["cancelled", "skipped"])
def test_a_run_whose_retry_never_ran_can_be_retried_again(admin_client, alice, ended):
    # Its retry cancelled or skipped, a failed run could be retried neither by itself
    # ("retried already") nor by its retry (not failed): only a plain trigger was left (review).
    from tests.api_support import API, client_for, reset_throttle

    reset_throttle("manual_run", alice.pk)
    failed = make_run(make_import(alice, SOURCE), "failed")
    dropped = make_run(failed.scheduled_import, ended)
    ImportRun.objects.filter(pk=dropped.pk).update(retry_of=failed)

    api = client_for(alice).post(f"{API}/runs/{failed.pk}/retry")

    assert api.status_code == 202, api.json()
    ImportRun.objects.filter(pk=api.json()["id"]).update(status="cancelled")
    act_on_all(admin_client, "retry_runs")
    assert ImportRun.objects.filter(retry_of=failed).count() == 3
