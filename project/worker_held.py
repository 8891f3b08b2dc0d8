"""Which run messages this worker holds: the `importbeat_held` control command.

A worker holds a message, unacknowledged, from its delivery until its task ends: waiting for a
pool process, waiting for its countdown (a retry, a run waiting behind its import's running
run; one over its owner's cap waits in its owner's line, tasks.fairness, held by no worker),
or running. Killed outright, it leaves them in the broker's unacked set, where Redis gives
them back only after the visibility timeout, hours later.
Reconciliation asks the live workers what they hold (schedules.broker.held_by_live_workers):
a message held by none of them is lost with its worker, and sent again. Before, it was
presumed held for STALE_QUEUED_SECONDS (30 minutes): a run waiting its turn under the owner's
cap when its worker was killed left its import importing nothing, every tick folded into it.
"""

from __future__ import annotations

from typing import Any

from celery.worker.control import inspect_command
from celery.worker.request import Request


@inspect_command()
def importbeat_held(state: Any) -> dict[str, Any]:
    """The task ids of the messages this worker holds: received, due later, or running."""
    from celery.worker import state as worker_state

    ids = {request.id for request in worker_state.reserved_requests}
    ids |= {request.id for request in worker_state.active_requests}
    timer = getattr(state.consumer, "timer", None)
    for waiting in getattr(getattr(timer, "schedule", None), "queue", []):
        args = getattr(getattr(waiting, "entry", None), "args", None) or ()
        if args and isinstance(args[0], Request):
            ids.add(args[0].id)
    return {"ids": sorted(ids)}
