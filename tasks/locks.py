"""The single-instance lock of a run: the import's lease in Redis (common.leases), and its
renewal while the run lives (on the process's renewal thread, common.ticker).

The database keeps the invariant while Redis has forgotten a lease
(`run_one_in_progress_per_import`), so a run can never be doubled by that window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from common import database_clock, leases
from common.leases import Lease
from common.ticker import Check, Ticker
from schedules.models import ImportRun

logger = logging.getLogger("importbeat.locks")


def run_lease(import_id: int, run_id: int) -> Lease:
    """The single-instance lease of an import, taken on behalf of one of its runs."""
    return RunLease(_lease_name(import_id), settings.RUN_LEASE_SECONDS, f"run-{run_id}")


class RunLease(Lease):
    """An import's lease, which a run that has ended holds no longer, whatever Redis says.

    Redis restarted from a snapshot younger than a lease period reloads the lease of an
    attempt that has ended since, with the rest of its TTL: the import's next run met it taken,
    was logged "skipped: run 12 of this import was in progress" of a run long over (its tick
    lost, under `overlap: skip`) or waited for it to expire (snapshot hunt). A run ends before
    it lets go of its lease (its outcome written, then the lease released), so a holder whose
    run has ended has nothing left to guard."""

    def acquire(self) -> bool:
        if super().acquire():
            return True
        # Only a lease found taken costs a statement: a run's usual path costs none more.
        holder = run_lease_holder_of(self.name)
        try:
            ended = holder is not None and _ended(holder)
        except DatabaseError:
            return False  # taken, as Redis says: the database's blip is not this lease's fault
        if not ended:
            return False
        if leases.free_if_held_by(self.name, f"run-{holder}"):
            logger.warning(
                "lease of run %s freed: the run has ended, its lease was left in Redis (Redis "
                "restarted from an older snapshot) name=%s", holder, self.name,
            )  # fmt: skip
        return super().acquire()


def _ended(run_id: int) -> bool:
    """Whether run `run_id` has ended (a final status); a run that is gone is not known to."""
    status = ImportRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
    return status in ImportRun.FINAL_STATUSES


def free_dead_runs_lease(import_id: int, run_id: int) -> bool:
    """Free the import's lease if run `run_id` still holds it, once that run's attempt is dead
    and ended (tasks.killed_runs): the import's next run need not wait for it to expire."""
    return leases.free_if_held_by(_lease_name(import_id), f"run-{run_id}")


def run_lease_holder(import_id: int) -> int | None:
    """The id of the run holding the import's lease, or None when nobody does."""
    return run_lease_holder_of(_lease_name(import_id))


def run_lease_holder_of(name: str) -> int | None:
    """The id of the run holding the lease `name`, or None when nobody does."""
    holder = Lease(name, 1, "probe").holder()
    if holder and holder.startswith("run-"):
        return int(holder.removeprefix("run-"))
    return None


def attempt_alive(run: ImportRun) -> bool:
    """Whether `run` is `running` under an attempt whose worker lives: its heartbeat, written
    with each renewal of its lease (every third of RUN_LEASE_SECONDS), is younger than two
    thirds of a lease period, so its lease cannot have expired by itself.

    A delivery that finds such a run's lease free meets a lease Redis lost, not one its dead
    holder left to expire: Redis restarted (empty, or from an older snapshot, which also brings
    back a copy of the run's message) and the live attempt takes its lease again at its next
    renewal (common.leases). Taken for a lost worker's, the run got a second attempt beside the
    live one, and a run allowed no retry failed at once, "the worker was lost during each of its
    1 attempts", while its worker imported on (snapshot hunt). Read from the run as the
    delivery loaded it: no statement more on a run's path."""
    if run.status != ImportRun.Status.RUNNING or run.heartbeat_at is None:
        return False
    age = (database_clock.now() - run.heartbeat_at).total_seconds()
    return age < settings.RUN_LEASE_SECONDS * 2 / 3


def _lease_name(import_id: int) -> str:
    return f"importbeat:lock:import:{import_id}"


class Renewer:
    """Renews a lease every third of its TTL while the work it guards lives.

    `beat` runs on every renewal (the run's heartbeat in the database); its errors are logged
    and tolerated, like Redis being away for a while: the next round tries again. Renewals
    run on the process's one renewal thread (common.ticker), never on the worker's.
    """

    def __init__(self, lease: Lease, beat: Callable[[], None] | None = None) -> None:
        self.lease = lease
        self.beat = beat
        self.lost = False
        self._check: Check | None = None

    def start(self) -> None:
        self._check = _renewals.every(max(self.lease.ttl / 3, 0.2), self._renew)

    def stop(self) -> None:
        """No renewal after this returns: the lease can be released without one retaking it."""
        if self._check is not None:
            self._check.cancel()

    def _renew(self) -> None:
        try:
            if not self.lease.renew():
                self.lost = True
                logger.error("lease lost to another holder name=%s", self.lease.name)
        except RedisError as error:
            logger.warning("lease renewal failed name=%s error=%s", self.lease.name, error)
        if self.beat is not None:
            try:
                self.beat()
            except Exception as error:
                logger.warning("heartbeat failed name=%s error=%r", self.lease.name, error)
                # Django never reconnects a broken connection by itself; the next round
                # opens a fresh one.
                _close_thread_connection()


def _close_thread_connection() -> None:
    from django.db import connection

    try:
        connection.close()
    except Exception:
        logger.debug("closing a broken connection failed", exc_info=True)


# The renewal thread's own database connection (the heartbeats') closes once no lease is left
# to renew, as each renewal thread's did at its end.
_renewals = Ticker("lease renewals", idle=_close_thread_connection)
