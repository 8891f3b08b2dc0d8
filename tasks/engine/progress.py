"""What a running import shows while it works: its phase, its progress, and its safe points.

Progress is written to the run row (and given to listeners) at most once a second; each time,
the run checks whether it was cancelled, before anything of it is committed.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from schedules import services
from schedules.models import ImportRun
from schedules.services import RunCounts

from ..errors import RunCancelled

logger = logging.getLogger("importbeat.importer")


PROGRESS_EVERY_SECONDS = 1.0


Progress = Callable[[dict[str, int | None]], None]


# The steps a running run shows on the dashboard, by the name `timed` gives them.
PHASES = {
    "download": "download", "staging": "staging", "analyze": "checks", "merge and commit": "merge",
}  # fmt: skip


# Extra progress listeners for this context (the `run_import` command's progress bar), so
# that a caller of `runner.execute` can watch a run without a parameter threaded through.
_listeners: contextvars.ContextVar[tuple[Progress, ...]] = contextvars.ContextVar(
    "importbeat_progress_listeners", default=()
)


@contextmanager
def listen(hook: Progress) -> Iterator[None]:
    """Call `hook(progress)` for every progress report of imports run inside this block."""
    token = _listeners.set((*_listeners.get(), hook))
    try:
        yield
    finally:
        _listeners.reset(token)


@contextmanager
def timed(step: str, run: ImportRun) -> Iterator[None]:
    # The dashboard's phase, written as the step starts: outside the merge's transaction, so
    # it shows at once.
    if step in PHASES:
        services.record_phase(run.pk, PHASES[step])
    # Per-step timings at DEBUG: where a slow import spends its time.
    started = time.perf_counter()
    yield
    logger.debug("run %s: %s took %.3fs", run.pk, step, time.perf_counter() - started)


class ProgressReporter:
    """Writes progress to the run row (and the hooks) at most once a second."""

    def __init__(self, run: ImportRun, counts: RunCounts, hook: Progress | None) -> None:
        self.run = run
        self.counts = counts
        self.hooks = (*([hook] if hook else []), *_listeners.get())
        self.bytes = 0
        self.bytes_total: int | None = None
        self._last = time.monotonic()

    def bytes_read(self, total: int) -> None:
        self.bytes = total

    def due(self) -> bool:
        return time.monotonic() - self._last >= PROGRESS_EVERY_SECONDS

    def report_if_due(self) -> None:
        if self.due():
            self.report()

    def report(self) -> None:
        from schedules.services import record_progress

        self._last = time.monotonic()
        progress = {
            "bytes_read": self.bytes,
            "bytes_total": self.bytes_total,
            "rows_read": self.counts.rows_read,
        }
        record_progress(self.run.pk, **progress)
        for hook in self.hooks:
            hook(progress)
        stop_if_cancelled(self.run)


def stop_if_cancelled(run: ImportRun) -> None:
    """A safe point: nothing of this attempt is committed yet, so stopping here leaves the
    dataset as it was (services.cancel_run)."""
    from schedules.services import cancel_requested

    cancelled = cancel_requested(run.pk)
    if cancelled:
        raise RunCancelled(cancelled)
