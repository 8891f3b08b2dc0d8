"""Owners' lines: the runs that wait their turn under MAX_RUNNING_PER_OWNER, parked in Redis.

A worker parks a run it finds over its owner's cap (tasks.fairness), and beat puts an owner's
runs past the cap in one batch there directly (schedules.dispatch), so that one owner's
backlog is no churn of messages that every other user's message waits behind. The run's end
sends the first parked one again (tasks.fairness.hand_on); the sweep looks after the lines.

In `common` because beat (schedules) and the workers (tasks) both write them, and neither
imports the other (STYLE rule 15). A line is a sorted set of run ids scored by the run id, so
that it goes in the order the runs were queued, a run is in it once however often it is
parked, and one leaving it is taken out wherever it stands; LINES lists the owners that have
one, for the sweep.
"""

from __future__ import annotations

from django.conf import settings

from common.redis_client import client

# The owners with parked runs (a Redis set of their ids).
LINES = "importbeat:owner_lines"


def line_key(owner_id: int | str) -> str:
    """The Redis sorted set of `owner_id`'s parked runs."""
    return f"importbeat:owner:{owner_id}:line"


def alive_seconds() -> float:
    """How far ahead a parked run's heartbeat is set, by its parking and at each sweep: past
    the next sweep, which sets it again while the run is in its line. Reconciliation takes a
    waiting run untouched for MISSED_TICK_GRACE_SECONDS for a lost message; a parked run has
    none in the broker, and was sent again at each pass. One that stays untouched (its line
    lost with a Redis restarted empty) is sent again all the same."""
    return 2.0 * settings.MAINTENANCE_INTERVAL_SECONDS


def join(runs_of_owners: dict[int, list[int]]) -> None:
    """Park runs in their owners' lines (owner id: run ids), in one round trip; raises
    RedisError."""
    pipe = client().pipeline(transaction=True)
    for owner_id, run_ids in runs_of_owners.items():
        pipe.zadd(line_key(owner_id), {str(run_id): run_id for run_id in run_ids}, nx=True)
        pipe.sadd(LINES, owner_id)
    pipe.execute()
