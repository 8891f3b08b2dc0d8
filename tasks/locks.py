"""The single-instance lock of a run: the import's lease in Redis (common.leases), and the
thread that renews it while the run lives.

The database keeps the invariant while Redis has forgotten a lease
(`run_one_in_progress_per_import`), so a run can never be doubled by that window.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.conf import settings
from redis.exceptions import RedisError

from common.leases import Lease

logger = logging.getLogger("importbeat.locks")


def run_lease(import_id: int, run_id: int) -> Lease:
    """The single-instance lease of an import, taken on behalf of one of its runs."""
    return Lease(f"importbeat:lock:import:{import_id}", settings.RUN_LEASE_SECONDS, f"run-{run_id}")


def run_lease_holder(import_id: int) -> int | None:
    """The id of the run holding the import's lease, or None when nobody does."""
    holder = Lease(f"importbeat:lock:import:{import_id}", 1, "probe").holder()
    if holder and holder.startswith("run-"):
        return int(holder.removeprefix("run-"))
    return None


class Renewer(threading.Thread):
    """Renews a lease every third of its TTL while the work it guards lives.

    `beat` runs on every renewal (the run's heartbeat in the database); its errors are logged
    and tolerated, like Redis being away for a while: the next round tries again.
    """

    def __init__(self, lease: Lease, beat: Callable[[], None] | None = None) -> None:
        super().__init__(name=f"renew {lease.name}", daemon=True)
        self.lease = lease
        self.beat = beat
        self.lost = False
        self._done = threading.Event()

    def run(self) -> None:
        interval = max(self.lease.ttl / 3, 0.2)
        try:
            while not self._done.wait(interval):
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
                        # Django never reconnects a broken connection by itself; the next
                        # round opens a fresh one.
                        _close_thread_connection()
        finally:
            # This thread's own database connection, if `beat` opened one.
            _close_thread_connection()

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)


def _close_thread_connection() -> None:
    from django.db import connection

    try:
        connection.close()
    except Exception:
        logger.debug("closing a broken connection failed", exc_info=True)
