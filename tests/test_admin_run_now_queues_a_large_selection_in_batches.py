"""Run now over a selection queues its runs a batch at a time (schedules.manual_runs): one by
one, 300 imports took 3.1 s and 1,509 queries in one request (ops hunt, last round), 10,000
about 100 s. Each run is the run, history entry and message enqueue_run makes for one; what
enqueue_run refuses is refused, and a broker that refuses a batch leaves nothing queued that
no message carries."""

import re
from html import unescape

import pytest
from auditlog.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext

from schedules import manual_runs, services
from schedules.models import ImportRun
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

# Committed, as in production: a batch's messages are sent once it commits.
pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/schedules/scheduledimport/"


def run_now_on(client, imports):
    return client.post(
        CHANGELIST,
        {"action": "run_now", "_selected_action": [imp.pk for imp in imports]},
        follow=True,
    )


def said(response) -> list[str]:
    return [
        unescape(m)
        for m in re.findall(
            r'<li class="(?:success|warning|error)">(.*?)</li>', response.content.decode(), re.S
        )
    ]


def many_imports(owner, count: int, prefix: str = "feed"):
    return [
        make_import(owner, SOURCE, name=f"{prefix} {n}", dataset=f"{prefix}{n}")
        for n in range(count)
    ]


def test_every_import_of_the_selection_gets_one_manual_run_and_its_message(
    admin_client, alice, sent, monkeypatch
):
    # Given 17 imports, and batches of 5
    monkeypatch.setattr(manual_runs, "BATCH", 5)
    imports = many_imports(alice, 17)

    # When Run now is chosen for them all
    answer = said(run_now_on(admin_client, imports))

    # Then each has one queued manual run by the admin, and each run's message was sent
    runs = ImportRun.objects.filter(scheduled_import__in=imports)
    assert sorted(runs.values_list("scheduled_import_id", flat=True)) == sorted(
        imp.pk for imp in imports
    )
    assert set(runs.values_list("status", "trigger", "triggered_by__username")) == {
        ("queued", "manual", "admin")
    }
    assert sorted(sent) == sorted(runs.values_list("pk", flat=True))
    assert "Queued 17 run(s)." in answer


def test_each_run_has_the_history_entry_a_single_trigger_writes(
    admin_client, admin_user, alice, sent
):
    # Given two imports, one run now through the service alone, one through the action
    one, other = many_imports(alice, 2)
    alone = services.enqueue_run(one, trigger="manual", user=admin_user)

    run_now_on(admin_client, [other])

    # Then both entries say the same, each naming its run and its actor
    [by_service] = LogEntry.objects.filter(object_id=one.pk, action=LogEntry.Action.ACCESS)
    [by_action] = LogEntry.objects.filter(object_id=other.pk, action=LogEntry.Action.ACCESS)
    batch_run = other.runs.get()
    assert by_service.additional_data == {
        "event": "run triggered",
        "run": alone.pk,
        "via": "system",
    }
    assert by_action.additional_data == {
        "event": "run triggered",
        "run": batch_run.pk,
        "via": "admin",
    }
    for field in ("actor_id", "content_type_id", "object_repr", "changes"):
        if field != "object_repr":
            assert getattr(by_action, field) == getattr(by_service, field), field
    assert by_action.object_repr == str(other)


def test_the_queries_do_not_grow_with_the_selection(admin_client, alice, sent):
    # Given 5 imports and 40 others
    few = many_imports(alice, 5, "few")
    more = many_imports(alice, 40, "more")

    # When Run now is chosen for each group
    with CaptureQueriesContext(connection) as for_few:
        run_now_on(admin_client, few)
    with CaptureQueriesContext(connection) as for_more:
        run_now_on(admin_client, more)

    # Then eight times the imports take about as many statements (one by one: 5 a run)
    assert len(for_more) - len(for_few) <= 5, (len(for_few), len(for_more))
    assert ImportRun.objects.count() == 45


def test_imports_with_an_active_run_or_a_deactivated_owner_are_named_and_the_rest_queued(
    admin_client, alice, bob, sent
):
    # Given 25 imports of alice's with a running run, two of bob's (deactivated), one idle
    busy = many_imports(alice, 25, "busy")
    running = {imp.pk: make_run(imp, "running") for imp in busy}
    bobs = many_imports(bob, 2, "Bob")
    bob.is_active = False
    bob.save()
    [idle] = many_imports(alice, 1, "idle")

    answer = said(run_now_on(admin_client, [*busy, *bobs, idle]))

    # Then the idle one alone is queued
    assert ImportRun.objects.filter(status="queued").get().scheduled_import_id == idle.pk
    assert "Queued 1 run(s)." in answer
    # and twenty busy ones are named with their run, the rest counted
    [already] = [m for m in answer if m.startswith("Already running:")]
    named = [int(pk) for pk in re.findall(r"\(run (\d+) is running\)", already)]
    assert len(named) == 20 and set(named) <= {run.pk for run in running.values()}
    assert already.endswith("and 5 more")
    # and bob's are named as refused, as enqueue_run refuses them
    [refused] = [m for m in answer if "not queued" in m]
    assert refused == (f"Bob 0, Bob 1: not queued, {services.OWNER_INACTIVE}."), refused


def test_a_batch_the_broker_refuses_is_withdrawn_and_the_rest_left_said(
    admin_client, alice, monkeypatch
):
    # Given batches of 3 and a broker that takes the first batch and refuses the next
    monkeypatch.setattr(manual_runs, "BATCH", 3)
    imports = many_imports(alice, 8)
    taken: list[int] = []

    def broker(runs, **_):
        if taken:
            raise services.BrokerUnavailable("the task queue is unavailable")
        taken.extend(run.pk for run in runs)

    monkeypatch.setattr(services, "send_runs", broker)

    answer = said(run_now_on(admin_client, imports))

    # Then the first batch's runs stay queued, the refused batch's are withdrawn with their
    # history entries, and the message says how many imports were not run
    queued = ImportRun.objects.all()
    assert sorted(queued.values_list("pk", flat=True)) == sorted(taken) and len(taken) == 3
    assert LogEntry.objects.filter(action=LogEntry.Action.ACCESS).count() == 3
    assert "Queued 3 run(s)." in answer
    assert "The task queue is unavailable: 5 imports were not run; try again." in answer, answer
    # and a new choice of the action runs those
    monkeypatch.setattr(services, "send_runs", lambda runs, **_: None)
    run_now_on(admin_client, imports)
    assert ImportRun.objects.count() == 8


def test_a_busy_import_of_a_refused_batch_is_named_once_not_counted_as_not_run_too(
    admin_client, alice, monkeypatch
):
    # Regression (review1): `not_tried` was every import from the refused batch on, so the
    # batch's busy import was said "Already running" and counted "not run; try again" too
    # Given batches of 3, six imports, the fifth with a run in progress, and a broker that
    # takes the first batch and refuses the second
    monkeypatch.setattr(manual_runs, "BATCH", 3)
    imports = many_imports(alice, 6)
    make_run(imports[4], "running")
    taken: list[int] = []

    def broker(runs, **_):
        if taken:
            raise services.BrokerUnavailable("the task queue is unavailable")
        taken.extend(run.pk for run in runs)

    monkeypatch.setattr(services, "send_runs", broker)

    # When Run now is chosen for all six
    answer = said(run_now_on(admin_client, imports))

    # Then the busy one is named once, and the two others of the refused batch are counted
    [busy] = [m for m in answer if m.startswith("Already running:")]
    assert "feed 4" in busy
    assert "The task queue is unavailable: 2 imports were not run; try again." in answer, answer


def test_a_run_a_worker_took_before_the_refusal_is_said_queued_not_not_run(
    admin_client, alice, monkeypatch
):
    # Given three imports, and a broker that sent the first message, which a worker took,
    # before it refused the rest
    imports = many_imports(alice, 3)

    def broker(runs, **_):
        ImportRun.objects.filter(pk=runs[0].pk).update(status="running")
        raise services.BrokerUnavailable("the task queue is unavailable")

    monkeypatch.setattr(services, "send_runs", broker)

    # When Run now is chosen for them
    answer = said(run_now_on(admin_client, imports))

    # Then the run the worker took stays, with its history entry, and is counted queued; the
    # two others are withdrawn and counted not run
    [kept] = ImportRun.objects.all()
    assert (kept.scheduled_import_id, kept.status) == (imports[0].pk, "running")
    [entry] = LogEntry.objects.filter(action=LogEntry.Action.ACCESS)
    assert entry.additional_data["run"] == kept.pk
    assert "Queued 1 run(s)." in answer
    assert "The task queue is unavailable: 2 imports were not run; try again." in answer, answer


def test_one_imports_run_now_button_refused_by_the_broker_reads_for_one_import(
    admin_client, alice, monkeypatch
):
    # Given an import, and a broker that refuses its run
    [imp] = many_imports(alice, 1)

    def broker(runs, **_):
        raise services.BrokerUnavailable("the task queue is unavailable")

    monkeypatch.setattr(services, "send_runs", broker)

    # When Run now is pressed on its page
    answer = said(admin_client.post(f"{CHANGELIST}{imp.pk}/run_now/", follow=True))

    # Then the page says that import was not run, nothing of a selection, and no run is left
    assert answer == ["The task queue is unavailable: 1 import was not run; try again."], answer
    assert not ImportRun.objects.exists()
