"""A parked e-mail notification sent again when a turn is given back, that finds its owner's
digest holds it (it sends nothing, so takes no turn), passes the turn on to the next in line.

Regression (scale hunt): it handed on to nobody, and the next job in the mail relay's line
waited for the sweep, one job a pass: an owner's digest waited over ten minutes behind three
such e-mails.
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


def park(job: turns.Job) -> None:
    with pytest.raises(turns.Parked), turns.turn(turns.MAIL, job, 1):
        pass


def test_an_email_the_digest_holds_passes_the_mail_turn_on(alice, bob, settings):
    settings.EMAIL_DIGEST_SECONDS = 300
    settings.EMAIL_CONCURRENCY = 1
    store = client()
    for key in store.scan_iter("importbeat:turns*"):
        store.delete(key)
    imp = make_import(alice, SOURCE)
    notice = NotificationDelivery.objects.create(
        scheduled_import=imp, event="late", channel="email"
    )
    task_id = f"importbeat-notification-{notice.pk}"

    # Given the mail relay's one turn held, alice's notice parked behind it, then bob's digest
    holder = turns.turn(turns.MAIL, turns.Job("x", "holder", 0, 0), 1)
    holder.__enter__()
    park(turns.Job(tasks.deliver_notification.name, task_id, notice.pk, 0))
    park(turns.Job(tasks.send_email_digest.name, "digest-bob", bob.pk, 0))
    line = turn_line_key(turns.MAIL)
    assert store.llen(line) == 2
    # ... and alice e-mailed meanwhile (her notice now waits for her digest)
    OwnerMailbox.objects.create(user=alice, last_sent_at=timezone.now())

    # When the holder gives the turn back (alice's notice sent again), and her notice runs
    holder.__exit__(None, None, None)
    assert store.llen(line) == 1
    tasks.deliver_notification.apply(
        args=[notice.pk], task_id=task_id, headers={turns.HANDED_ON: turns.MAIL}
    )

    # Then bob's digest, next in line, is sent at once (not left for the sweep)
    assert store.llen(line) == 0
    assert store.zrange("importbeat:turns:mail:holders", 0, -1) == [b"sent:digest-bob"]
