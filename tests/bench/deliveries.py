"""How the notification benches wait for their deliveries: until each has the status awaited,
failing at once, with the reason the product gave, when one ended without going out.

A bench whose imports no longer asked for their notifications (`notify_on` empty since the
column's default: dc5178c) saw every one `skipped` and waited for deliveries that never came,
until its timeout, without a word of why.
"""

from __future__ import annotations

from schedules.models import NotificationDelivery
from tests.conftest import wait_for

ENDED_WITHOUT_GOING_OUT = ("skipped", "failed")


def wait_for_notifications(
    ids: list[int], statuses: tuple[str, ...], timeout: float, what: str
) -> None:
    """Poll until every notification of `ids` has one of `statuses` (delivered, held)."""
    deliveries = NotificationDelivery.objects.filter(pk__in=ids)

    def done() -> bool:
        ended = deliveries.filter(status__in=ENDED_WITHOUT_GOING_OUT)
        if errors := list(ended.values_list("status", "error")[:3]):
            raise AssertionError(
                f"{ended.count()} of {len(ids)} notifications ended without going out"
                f" {errors}, waiting for {what}"
            )
        return deliveries.filter(status__in=statuses).count() == len(ids)

    wait_for(done, timeout, interval=0.5, what=what)
