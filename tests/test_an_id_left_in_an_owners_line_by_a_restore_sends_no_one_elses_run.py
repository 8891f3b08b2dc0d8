"""An id left in an owner's line that is now another owner's run (a database restored from a
backup gives the ids of the runs made since to new runs) is not sent as the owner's, nor
counted in the owner's slots.

The line's ids were read as runs of any owner: alice's parked run, lost with the restore, left
its id in her line; bob's new run took that id, and the next end of one of alice's runs sent
bob's run (a second message for it, past bob's own cap and line, counted in alice's slots)
(restore hunt).
"""

from __future__ import annotations

import pytest

from schedules.models import ImportRun
from tasks import fairness
from tests.factories import make_import
from tests.test_an_owners_line_leaves_no_run_waiting_for_ever import cap_of_one, line_of, park

pytestmark = pytest.mark.django_db

__all__ = ["cap_of_one"]  # (the fixture, used by name)


def bobs_run_under_the_id_of(parked: ImportRun, bob) -> ImportRun:
    """The restore: alice's parked run gone from the database, bob's new run under its id."""
    imp = make_import(bob, "http://127.0.0.1/p.csv", name="bob's", dataset="bob's")
    ImportRun.objects.filter(pk=parked.pk).delete()
    return ImportRun.objects.create(pk=parked.pk, scheduled_import=imp, trigger="manual")


def test_an_id_in_alices_line_that_is_bobs_run_now_is_not_sent_as_hers(
    alice, bob, cap_of_one, sent
):
    # Given alice's parked run, whose id is bob's run's after a restore
    busy, run_of_alice = cap_of_one
    parked = run_of_alice()
    park(parked)
    bobs = bobs_run_under_the_id_of(parked, bob)

    # When alice's running run ends and hands on her slot
    ImportRun.objects.filter(pk=busy.pk).update(status="succeeded")
    fairness.hand_on(alice.pk)

    # Then bob's run is not sent from alice's line, and the id leaves it
    assert sent == []
    assert line_of(alice) == []
    assert ImportRun.objects.get(pk=bobs.pk).status == "queued"


def test_an_id_admitted_for_alice_that_is_bobs_run_now_holds_none_of_her_slots(
    alice, bob, cap_of_one, sent
):
    # Given alice's run admitted to her slot, whose id is bob's run's after a restore
    busy, run_of_alice = cap_of_one
    admitted = run_of_alice()
    ImportRun.objects.filter(pk=busy.pk).update(status="succeeded")
    assert fairness.admit(admitted)
    bobs_run_under_the_id_of(admitted, bob)

    # When a worker takes another run of hers, then it is admitted: the admission of a run
    # that is not hers holds none of her slots
    assert fairness.admit(run_of_alice())
