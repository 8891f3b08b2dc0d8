"""A run's lease is renewed on its process's renewal thread (common/ticker.py); stopping the
renewal waits for a renewal in progress, so releasing the lease right after cannot be undone
by a renewal that retakes it (the next run of the import would wait a whole lease for it)."""

import threading
import time

from tasks import locks


def test_a_lease_released_while_it_was_being_renewed_stays_free():
    # Given a lease renewed every 0.2 s, whose renewal is in progress (a slow heartbeat)
    lease = locks.Lease("importbeat:test:renewal", 0.6, "run-1")
    assert lease.acquire()
    in_beat, beats = threading.Event(), []

    def slow_beat() -> None:
        beats.append(time.monotonic())
        in_beat.set()
        time.sleep(0.3)

    renewer = locks.Renewer(lease, beat=slow_beat)
    renewer.start()
    assert in_beat.wait(5)

    # When the run stops the renewal and releases its lease
    renewer.stop()
    lease.release()

    # Then no renewal takes it again, and none runs any more
    time.sleep(0.8)
    assert lease.holder() is None
    assert len(beats) == 1
