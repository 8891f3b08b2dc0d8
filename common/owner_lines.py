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
# Set with no expiry while the lines are whole, to the id of the Redis server's run that holds
# them (`whole`): gone, Redis lost them (tasks.fairness).
KEPT = "importbeat:owner_lines:kept"


def whole() -> bool:
    """Whether the lines in Redis are whole: noted so (`note_whole`) by this very run of the
    Redis server. Redis restarted from an older snapshot brings the note back with the lines as
    they were, without the runs parked since: each waited about 12 minutes for reconciliation
    and was overtaken by its owner's newer runs, the rebuild that puts back lines Redis lost
    skipped (snapshot hunt). Each start of Redis has a run id of its own (INFO's `run_id`), so
    a note of another run is no note. Raises RedisError."""
    noted = client().get(KEPT)
    return noted is not None and noted.decode() == _server_run()


def note_whole() -> None:
    """Note that the lines are whole in this run of the Redis server. Raises RedisError."""
    client().set(KEPT, _server_run())


def _server_run() -> str:
    # A server that does not say (a proxy in front of it) keeps the note as before: a restart
    # with the lines lost whole is still told by the note gone.
    return str(client().info("server").get("run_id") or "1")


def line_key(owner_id: int | str) -> str:
    """The Redis sorted set of `owner_id`'s parked runs."""
    return f"importbeat:owner:{owner_id}:line"


def alive_seconds() -> float:
    """How far ahead a parked run's heartbeat is set: when it is parked, and again by
    reconciliation when it finds the run untouched that long and still in its line
    (`in_lines`). Reconciliation takes a waiting run untouched for MISSED_TICK_GRACE_SECONDS
    for a lost message, and a parked run has no message in the broker; a heartbeat set this far
    ahead keeps it off reconciliation's candidates for that long, with no write in between (the
    sweep rewrote every parked run's row at each pass). A run whose line was lost with a Redis
    restarted empty is sent again by reconciliation this long after it was parked (or last
    found in its line), plus the grace period and a pass: about 12 minutes at the defaults."""
    return 10.0 * settings.MAINTENANCE_INTERVAL_SECONDS


# How a parked run's note ends (tasks.fairness, schedules.dispatch): with WAITING_ITS_TURN at
# its start, what tells reconciliation that the run may be in its owner's line.
PARKED_NOTE_END = "(MAX_RUNNING_PER_OWNER)"


def in_lines(runs_of_owners: dict[int, list[int]]) -> set[int]:
    """The runs among `runs_of_owners` (owner id: run ids) that are in their owner's line, in
    one round trip; raises RedisError."""
    pipe = client().pipeline(transaction=False)
    asked = [run_id for run_ids in runs_of_owners.values() for run_id in run_ids]
    for owner_id, run_ids in runs_of_owners.items():
        for run_id in run_ids:
            # ZSCORE one by one, not ZMSCORE: that needs Redis 6.2, and Redis 5 and 6.0 are
            # still about (one round trip all the same).
            pipe.zscore(line_key(owner_id), str(run_id))
    scores = pipe.execute() if asked else []
    return {run_id for run_id, score in zip(asked, scores, strict=True) if score is not None}


def join(runs_of_owners: dict[int, list[int]]) -> None:
    """Park runs in their owners' lines (owner id: run ids), in one round trip; raises
    RedisError."""
    pipe = client().pipeline(transaction=True)
    for owner_id, run_ids in runs_of_owners.items():
        pipe.zadd(line_key(owner_id), {str(run_id): run_id for run_id in run_ids}, nx=True)
        pipe.sadd(LINES, owner_id)
    pipe.execute()
