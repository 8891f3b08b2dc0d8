"""The owner's line (tasks/fairness.py) at its edges: what the sweep and reconciliation cost per
parked run, which run holds one of its owner's slots, and how often the sweep sends from a
line whose first sent runs still wait in the broker.

- The sweep used to rewrite every parked run's heartbeat at every pass (100,000 parked runs:
  2 to 32 s a pass and tens of MB of bloat); it writes none now, and reconciliation, finding
  a parked run untouched past its heartbeat, sets it ahead again while it is in its line,
  without sending it, and looks at such runs apart from the others, so a lost message of any
  other run is not kept waiting behind them.
- A run that fails and backs off held its admission for 60 s, and nothing sent its owner's
  next parked run.
- In a backlog, each sweep pass sent `cap` more runs of a line, once the first ones'
  admissions were over while their messages still waited in the broker.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from common import owner_lines
from common.redis_client import client
from schedules import reconcile, services
from schedules.models import ImportRun
from tasks import fairness, maintenance, runner
from tests.bound_task import BoundTask as FakeTask
from tests.bound_task import Retried as FakeRetry
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs_of_alice(alice, csv_server, settings):
    """A maker of alice's runs, each of an import of its own; her cap is one."""
    settings.MAX_RUNNING_PER_OWNER = 1
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    names = iter(range(1000))

    def run_of_alice(**imports) -> ImportRun:
        name = f"import {next(names)}"
        imp = make_import(alice, imports.pop("url", url), name=name, dataset=name, **imports)
        return ImportRun.objects.create(scheduled_import=imp, trigger="manual")

    return run_of_alice


def line_of(owner) -> list[int]:
    return [int(m) for m in client().zrange(owner_lines.line_key(owner.pk), 0, -1)]


def lined_up(owner, runs: list[ImportRun]) -> None:
    """Put `runs` in their owner's line as beat does: noted, their heartbeat ahead."""
    owner_lines.join({owner.pk: [run.pk for run in runs]})
    ahead = timezone.now() + timedelta(seconds=owner_lines.alive_seconds())
    ImportRun.objects.filter(pk__in=[run.pk for run in runs]).update(
        error_message=f"{services.WAITING_ITS_TURN} more than 1 runs of this owner due at once, "
        "at most 1 at once (MAX_RUNNING_PER_OWNER)",
        heartbeat_at=ahead,
    )


def row_versions(runs: list[ImportRun]) -> dict[int, str]:
    """Each run row's place in the table (ctid): every write of the row moves it, in the test's
    transaction too."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, ctid::text FROM {ImportRun._meta.db_table} WHERE id = ANY(%s)",
            [[run.pk for run in runs]],
        )
        return dict(cursor.fetchall())


def test_the_sweep_writes_no_parked_run(alice, runs_of_alice, sent):
    # Given alice at her cap and three runs of hers in her line
    busy = runs_of_alice()
    ImportRun.objects.filter(pk=busy.pk).update(status="running")
    parked = [runs_of_alice() for _ in range(3)]
    lined_up(alice, parked)
    before = row_versions(parked)

    # When the sweep runs, twice
    maintenance.sweep_runs()
    maintenance.sweep_runs()

    # Then no parked run's row was written, none was sent, and they are still in her line
    assert row_versions(parked) == before
    assert sent == []
    assert line_of(alice) == [run.pk for run in parked]


def test_reconciliation_sets_parked_runs_ahead_and_finds_a_lost_message_behind_them(
    alice, bob, runs_of_alice, csv_server, monkeypatch
):
    # Given three parked runs of alice untouched for an hour (their heartbeat's horizon over),
    # and a lost message of bob's run, on an import made after hers; reconciliation takes two
    # runs a pass
    monkeypatch.setattr(reconcile, "BATCH", 2)
    busy = runs_of_alice()
    ImportRun.objects.filter(pk=busy.pk).update(status="running")
    parked = [runs_of_alice() for _ in range(3)]
    lined_up(alice, parked)
    hour_ago = timezone.now() - timedelta(hours=1)
    ImportRun.objects.filter(pk__in=[run.pk for run in parked]).update(heartbeat_at=hour_ago)
    url = csv_server.serve("/b.csv", PRODUCTS_CSV)
    lost = ImportRun.objects.create(
        scheduled_import=make_import(bob, url, name="b", dataset="b"), trigger="manual"
    )
    ImportRun.objects.filter(pk=lost.pk).update(queued_at=hour_ago, heartbeat_at=hour_ago)

    # When reconciliation runs
    resent = reconcile.reconcile()["resent"]

    # Then bob's run is sent again, and none of alice's: the two it looked at are set ahead
    assert resent == 1
    lost.refresh_from_db()
    assert lost.heartbeat_at > hour_ago
    ahead = ImportRun.objects.filter(
        pk__in=[run.pk for run in parked], heartbeat_at__gt=timezone.now()
    )
    assert ahead.count() == 2
    assert line_of(alice) == [run.pk for run in parked]

    # And the next pass sets the third ahead, sending nothing
    assert reconcile.reconcile()["resent"] == 0
    assert ahead.count() == 3


def test_a_run_that_backs_off_gives_its_slot_to_the_next_parked_run(
    alice, runs_of_alice, csv_server, sent
):
    # Given alice's run R behind a server that answers 503, and her run W in her line
    failing = csv_server.serve("/busy.csv", b"", status=503)
    r = runs_of_alice(
        url=failing, max_retries=3, retry_backoff_seconds=600, retry_backoff_max_seconds=600
    )
    w = runs_of_alice()
    lined_up(alice, [w])

    # When a worker admits R, which fails and backs off for up to ten minutes
    with pytest.raises(FakeRetry):
        runner.execute(r.pk, task=FakeTask())
    assert ImportRun.objects.get(pk=r.pk).status == "retrying"

    # Then W is sent at once: R holds no slot while it backs off
    assert sent == [w.pk]
    assert line_of(alice) == []


def test_the_sweep_sends_no_more_of_a_line_while_what_it_sent_is_on_its_way(
    alice, runs_of_alice, sent
):
    # Given five runs of alice in her line, none of hers running
    runs = [runs_of_alice() for _ in range(5)]
    lined_up(alice, runs)
    key = fairness._admitted_key(alice.pk)

    def later(seconds: float) -> None:
        """`seconds` pass, the messages sent still in the broker (workers busy elsewhere)."""
        for member, until in client().hgetall(key).items():
            client().hset(key, member, float(until) - seconds)

    # When four sweep passes run a minute apart
    for _pass in range(4):
        maintenance.sweep_runs()
        later(fairness.ADMITTED_SECONDS + 1)

    # Then the first run alone was sent: its slot is held while its message is on its way
    assert sent == [runs[0].pk]

    # And a send lost on the way does not hold the line for ever: past SENT_SECONDS the sweep
    # sends the next run
    later(fairness.SENT_SECONDS)
    maintenance.sweep_runs()
    assert sent == [runs[0].pk, runs[1].pk]


@pytest.fixture
def owners_with_lines(csv_server, settings, django_user_model):
    """Eight owners, each with two runs in their line and no run running; a cap of one."""
    settings.MAX_RUNNING_PER_OWNER = 1
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    owners = []
    for n in range(8):
        owner = django_user_model.objects.create_user(f"owner{n}", password="x")
        runs = [
            ImportRun.objects.create(
                scheduled_import=make_import(owner, url, name=f"i{k}", dataset=f"i{k}"),
                trigger="manual",
            )
            for k in range(2)
        ]
        lined_up(owner, runs)
        owners.append(owner)
    return owners


def test_a_pass_while_the_runs_it_sent_wait_costs_no_look_per_owner(owners_with_lines, sent):
    # Given a first pass that sent each owner's first run, its message still in the broker
    # (10,000 such owners: each pass after the first took 11 s for nothing, scale hunt)
    fairness.look_after_lines()
    assert len(sent) == len(owners_with_lines)

    # When the next pass looks
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as statements:
        assert fairness.look_after_lines() == 0

    # Then its statements do not follow the owners: their slots are counted at once
    assert len(statements) <= 3, [q["sql"][:80] for q in statements]


def test_a_pass_cut_short_goes_on_where_it_stopped(owners_with_lines, sent, monkeypatch):
    # Given passes that may look at one owner's line only
    monkeypatch.setattr(fairness, "LOOK_SECONDS", -1)

    # When passes run one after another (lines an earlier test left in Redis among them)
    for _pass in range(3 * len(owners_with_lines)):
        fairness.look_after_lines()

    # Then each owner's line was looked at in turn (a cut pass served the same first owners
    # each time)
    owner_of = dict(
        ImportRun.objects.filter(pk__in=sent).values_list("pk", "scheduled_import__owner_id")
    )
    first_runs = [owner_of[run_id] for run_id in sent]
    assert first_runs == sorted(owner.pk for owner in owners_with_lines)
