"""A turn given back to send the next parked notification is kept for it until its message
comes (tasks/turns.py): nobody else takes it meanwhile, and a notification that takes no turn
passes on only the turn kept for it.

Regression (last round's review): a turn given back was free while the job it sent was on its
way, so an e-mail the owner's digest held, arriving then, handed the free turn to the next
parked job as well; of the two sent for one turn, one met a taken turn and went back to the
end of the line.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from common.redis_client import client, turn_line_key
from schedules.models import NotificationDelivery, OwnerMailbox
from tasks import tasks, turns
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)

HOLDERS = f"importbeat:turns:{turns.MAIL}:holders"


@pytest.fixture
def store(settings):
    settings.EMAIL_DIGEST_SECONDS = 300
    settings.EMAIL_CONCURRENCY = 1
    redis = client()
    for key in redis.scan_iter("importbeat:turns*"):
        redis.delete(key)
    return redis


def park(job: turns.Job) -> None:
    with pytest.raises(turns.Parked), turns.turn(turns.MAIL, job, 1):
        pass


def held_email(owner) -> NotificationDelivery:
    """A notice by e-mail that the owner's digest holds (the owner was e-mailed just now)."""
    notice = NotificationDelivery.objects.create(
        scheduled_import=make_import(owner, SOURCE, name=f"late-{owner.pk}"),
        event="late",
        channel="email",
    )
    OwnerMailbox.objects.update_or_create(user=owner, defaults={"last_sent_at": timezone.now()})
    return notice


def give_back_to(first: turns.Job, *then: turns.Job) -> None:
    """The mail relay's one turn held, `first` and `then` parked behind it, the turn given back:
    `first` is sent, its turn kept for it."""
    holder = turns.turn(turns.MAIL, turns.Job("x", "holder", 0, 0), 1)
    holder.__enter__()
    for job in (first, *then):
        park(job)
    holder.__exit__(None, None, None)


def test_a_held_email_arriving_while_a_handed_on_job_is_on_its_way_sends_no_other(
    alice, bob, store
):
    # Given a turn given back to bob's first digest, whose message is on its way, and bob's
    # second digest still parked
    give_back_to(
        turns.Job(tasks.send_email_digest.name, "digest-1", bob.pk, 0),
        turns.Job(tasks.send_email_digest.name, "digest-2", bob.pk, 0),
    )
    assert store.llen(turn_line_key(turns.MAIL)) == 1

    # When an e-mail of alice's that her digest holds runs (sent as any other, not by a hand-on)
    notice = held_email(alice)
    tasks.deliver_notification.apply(args=[notice.pk], task_id="alice-notice")

    # Then the second digest still waits its turn: the turn is kept for the first
    assert store.llen(turn_line_key(turns.MAIL)) == 1
    assert store.zrange(HOLDERS, 0, -1) == [b"sent:digest-1"]


def test_the_job_a_turn_was_kept_for_takes_it_and_another_newcomer_waits(bob, store):
    first = turns.Job(tasks.send_email_digest.name, "digest-1", bob.pk, 0)
    give_back_to(first)

    # A newcomer finds the turn taken (it was free before: the kept turn is a holder)
    park(turns.Job(tasks.send_email_digest.name, "newcomer", bob.pk + 1, 0))

    # ... and the job it was kept for takes it when its message comes, whoever else waits
    with turns.turn(turns.MAIL, first, 1):
        assert store.zcard(HOLDERS) == 1
        assert b"sent:digest-1" not in store.zrange(HOLDERS, 0, -1)
    # Giving it back sends the newcomer, its turn kept for it in turn
    assert store.zrange(HOLDERS, 0, -1) == [b"sent:newcomer"]


def test_a_handed_on_email_the_digest_holds_passes_its_kept_turn_on_once(alice, bob, store):
    notice = held_email(alice)
    task_id = f"importbeat-notification-{notice.pk}"
    give_back_to(
        turns.Job(tasks.deliver_notification.name, task_id, notice.pk, 0),
        turns.Job(tasks.send_email_digest.name, "digest-bob", bob.pk, 0),
        turns.Job(tasks.send_email_digest.name, "digest-carol", bob.pk + 1, 0),
    )
    handed_on = {turns.HANDED_ON: turns.MAIL}

    # When alice's held notice comes, sent by the hand-on: its kept turn goes to bob's digest
    tasks.deliver_notification.apply(args=[notice.pk], task_id=task_id, headers=handed_on)
    assert store.zrange(HOLDERS, 0, -1) == [b"sent:digest-bob"]
    assert store.llen(turn_line_key(turns.MAIL)) == 1

    # And the same message again (a redelivery, or a retry carrying the header) passes nothing
    tasks.deliver_notification.apply(args=[notice.pk], task_id=task_id, headers=handed_on)
    assert store.zrange(HOLDERS, 0, -1) == [b"sent:digest-bob"]
    assert store.llen(turn_line_key(turns.MAIL)) == 1


def test_a_handed_on_notification_deleted_meanwhile_passes_its_kept_turn_on(alice, bob, store):
    notice = held_email(alice)
    task_id = f"importbeat-notification-{notice.pk}"
    give_back_to(
        turns.Job(tasks.deliver_notification.name, task_id, notice.pk, 0),
        turns.Job(tasks.send_email_digest.name, "digest-bob", bob.pk, 0),
    )
    notice.scheduled_import.delete()

    tasks.deliver_notification.apply(
        args=[notice.pk], task_id=task_id, headers={turns.HANDED_ON: turns.MAIL}
    )

    assert store.zrange(HOLDERS, 0, -1) == [b"sent:digest-bob"]
    assert store.llen(turn_line_key(turns.MAIL)) == 0
