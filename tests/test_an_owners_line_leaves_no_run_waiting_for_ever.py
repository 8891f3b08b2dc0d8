"""The owner's line (tasks/fairness.py, common/owner_lines.py): who sends a parked run, which
parked run is never sent, and why reconciliation does not take one for a lost message.

A run over its owner's cap is parked in its owner's line, its task over without a message of its
own. It is sent again by whatever ends a delivery of its owner's runs (`hand_on`), else by the
sweep; reconciliation must not send it again meanwhile (it has no message in the broker, so it
looked lost a grace period after its note), and must still send it once its line is gone.
"""

from datetime import timedelta

import pytest
from celery.exceptions import Retry
from django.utils import timezone

from common import owner_lines
from common.redis_client import client
from schedules import dispatch, reconcile, services
from schedules.models import ImportRun
from tasks import fairness, maintenance, runner
from tests.bound_task import BoundTask as FakeTask
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def cap_of_one(alice, csv_server, settings):
    """alice's cap of one, held by a running run of hers; a maker of her other runs."""
    settings.MAX_RUNNING_PER_OWNER = 1
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    names = iter(range(100))

    def run_of_alice() -> ImportRun:
        name = f"import {next(names)}"
        imp = make_import(alice, url, name=name, dataset=name)
        return ImportRun.objects.create(scheduled_import=imp, trigger="manual")

    busy = run_of_alice()
    ImportRun.objects.filter(pk=busy.pk).update(status="running")
    return busy, run_of_alice


def park(run: ImportRun) -> Retry:
    with pytest.raises(Retry) as parked:
        runner.execute(run.pk, task=FakeTask())
    return parked.value


def line_of(owner) -> list[int]:
    return [int(m) for m in client().zrange(owner_lines.line_key(owner.pk), 0, -1)]


def test_a_parked_run_ends_its_task_saying_why_and_is_sent_when_its_owners_run_ends(
    alice, cap_of_one, sent
):
    # Given alice's run held back by her cap
    busy, run_of_alice = cap_of_one
    waiting = run_of_alice()

    # When a worker takes it: parked, its task over in RETRY, with no message sent
    parked = park(waiting)
    assert "waiting its turn" in str(parked) and "MAX_RUNNING_PER_OWNER (1)" in str(parked)
    waiting.refresh_from_db()
    assert (waiting.status, waiting.attempts) == ("queued", 0)
    assert waiting.error_message.startswith(services.WAITING_ITS_TURN)
    assert line_of(alice) == [waiting.pk]
    assert sent == []

    # When a worker's delivery of her running run ends (here: the attempt of a lost worker,
    # taken again and finished)
    runner.execute(busy.pk, task=FakeTask())

    # Then the parked run is sent, once, and has left the line
    assert ImportRun.objects.get(pk=busy.pk).status == "succeeded"
    assert sent == [waiting.pk]
    assert line_of(alice) == []
    assert fairness.hand_on(alice.pk) == 0


def test_a_parked_run_is_in_its_line_once_however_often_it_is_delivered(alice, cap_of_one, sent):
    _busy, run_of_alice = cap_of_one
    first, second = run_of_alice(), run_of_alice()
    for run in (first, second, first):
        park(run)
    assert line_of(alice) == [first.pk, second.pk]


def test_a_cancelled_parked_run_leaves_the_line_and_the_next_one_goes(alice, cap_of_one, sent):
    # Given two parked runs of alice, the first cancelled
    busy, run_of_alice = cap_of_one
    first, second = run_of_alice(), run_of_alice()
    park(first)
    park(second)
    services.cancel_run(first, alice)

    # When her running run ends, then the second one is sent, and the first is gone
    ImportRun.objects.filter(pk=busy.pk).update(status="succeeded")
    assert fairness.hand_on(alice.pk) == 1
    assert sent == [second.pk]
    assert line_of(alice) == []


def test_the_sweep_keeps_a_parked_run_from_being_taken_for_a_lost_message(alice, cap_of_one):
    # Given a parked run whose note is long past the grace period (its owner's runs are slow)
    _busy, run_of_alice = cap_of_one
    waiting = run_of_alice()
    park(waiting)
    long_ago = timezone.now() - timedelta(hours=1)
    ImportRun.objects.filter(pk=waiting.pk).update(heartbeat_at=long_ago)

    # When the maintenance jobs run
    maintenance.sweep_runs()
    resent = reconcile.reconcile()["resent"]

    # Then it is not sent again: reconciliation found it in its line and set it ahead
    assert resent == 0
    waiting.refresh_from_db()
    assert waiting.heartbeat_at > timezone.now()
    assert line_of(alice) == [waiting.pk]


def test_a_parked_run_whose_line_redis_lost_is_sent_again_by_reconciliation(alice, cap_of_one):
    # Given a parked run, and its line gone while the lines' key stayed (evicted alone)
    _busy, run_of_alice = cap_of_one
    waiting = run_of_alice()
    park(waiting)
    owner_lines.note_whole()  # the lines whole, as this Redis kept them
    client().delete(owner_lines.line_key(alice.pk), owner_lines.LINES)

    # When its note is past the grace period, then reconciliation sends it again
    ImportRun.objects.filter(pk=waiting.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    maintenance.sweep_runs()
    assert reconcile.reconcile()["resent"] == 1


def test_the_sweep_sends_the_first_parked_run_of_an_owner_with_a_slot_free(alice, cap_of_one, sent):
    # Given a parked run, and the run that held the slot ended where nothing handed on
    busy, run_of_alice = cap_of_one
    waiting = run_of_alice()
    park(waiting)
    ImportRun.objects.filter(pk=busy.pk).update(status="failed")

    # When the sweep runs, then it sends the parked run, once
    maintenance.sweep_runs()
    maintenance.sweep_runs()
    assert sent == [waiting.pk]


def test_beat_lines_up_an_owners_runs_past_the_cap_in_one_batch(alice, bob, csv_server, settings):
    # Given five of alice's imports and one of bob's due at once, a cap of two
    settings.MAX_RUNNING_PER_OWNER = 2
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    imports = [make_import(alice, url, name=f"a{n}", dataset=f"a{n}") for n in range(5)]
    imports.append(make_import(bob, url, name="b", dataset="b"))
    for imp in imports:
        imp.__class__.objects.filter(pk=imp.pk).update(
            next_run_at=timezone.now() - timedelta(seconds=1)
        )
    published: list[ImportRun] = []

    # When beat dispatches them
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "send_runs", lambda runs, **_: published.extend(runs))
        dispatch.dispatch_due()

    # Then alice's first two and bob's run are sent, her three others wait in her line. (Run
    # at the top of an hour, their hourly schedule's tick came due too, a second after the one
    # set here: beat folded it into that one's run, skipped, once in CI. Skipped runs are not
    # the runs told of here.)
    ran = ImportRun.objects.exclude(status="skipped")
    runs = sorted(ran.filter(scheduled_import__owner=alice), key=lambda r: r.pk)
    assert sorted(r.pk for r in published) == sorted(
        [runs[0].pk, runs[1].pk, ran.get(scheduled_import__owner=bob).pk]
    )
    assert line_of(alice) == [r.pk for r in runs[2:]]
    for run in runs[2:]:
        assert run.status == "queued"
        assert run.error_message.startswith(services.WAITING_ITS_TURN)
        assert "(MAX_RUNNING_PER_OWNER)" in run.error_message
        assert run.heartbeat_at > timezone.now()


def test_lines_redis_lost_whole_are_put_back_at_the_next_sweep(alice, cap_of_one, sent):
    # Redis restarted empty: each parked run waited about 12 minutes for reconciliation to find
    # it out of its line, and the owner's newer runs overtook it (restart hunt).
    busy, run_of_alice = cap_of_one
    first, second = run_of_alice(), run_of_alice()
    park(first)
    park(second)
    client().delete(owner_lines.line_key(alice.pk), owner_lines.LINES, owner_lines.KEPT)

    maintenance.sweep_runs()

    assert line_of(alice) == [first.pk, second.pk]
    assert client().exists(owner_lines.KEPT)
    # and the first goes when the slot frees, in its turn
    ImportRun.objects.filter(pk=busy.pk).update(status="failed")
    maintenance.sweep_runs()
    assert sent == [first.pk]


def test_a_run_taken_out_of_its_line_is_touched_now_not_left_ahead(alice, cap_of_one):
    # Taken out of its line and lost before its message went (its worker killed), a run kept
    # the heartbeat set ahead at its parking: it held one of its owner's slots, and the line,
    # for about 12 minutes before reconciliation looked at it (restart hunt).
    busy, run_of_alice = cap_of_one
    waiting = run_of_alice()
    park(waiting)
    ImportRun.objects.filter(pk=busy.pk).update(status="failed")

    taken = fairness._call_next(alice.pk, 1)

    assert [run.pk for run in taken] == [waiting.pk]
    assert ImportRun.objects.get(pk=waiting.pk).heartbeat_at <= timezone.now()


def test_lines_are_put_back_a_chunk_at_a_time(alice, cap_of_one, monkeypatch):
    # One write of all of an owner's parked runs: Redis before 7.0 refuses 524,287 members
    # or more and drops the connection, so no line ever came back, the rebuild tried again at
    # every pass, and the sweep handed on in none (review).
    _busy, run_of_alice = cap_of_one
    runs = [run_of_alice() for _ in range(7)]
    for run in runs:
        park(run)
    client().delete(owner_lines.line_key(alice.pk), owner_lines.LINES, owner_lines.KEPT)
    monkeypatch.setattr(fairness, "REBUILD_CHUNK", 3, raising=False)
    written: list[int] = []
    join = owner_lines.join

    def counted(runs_of_owners):
        written.append(sum(len(ids) for ids in runs_of_owners.values()))
        join(runs_of_owners)

    monkeypatch.setattr(owner_lines, "join", counted)

    maintenance.sweep_runs()

    assert line_of(alice) == [run.pk for run in runs]
    assert written == [3, 3, 1]
