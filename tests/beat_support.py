"""Helpers for the tests of beat's loop, run here on this thread (no beat process)."""

from __future__ import annotations


def beat_starts() -> None:
    """The first dispatch of a beat just started (ImportScheduler._dispatch_imports), without
    its leadership, its clock stamp or its log of the first dispatch."""
    from project.beat import ImportScheduler

    scheduler = ImportScheduler.__new__(ImportScheduler)
    scheduler.intervals_in_step = False
    scheduler.max_interval = 5
    scheduler.first_dispatch_logged = True
    scheduler._stamp_last_tick = lambda: None
    scheduler._dispatch_imports()
