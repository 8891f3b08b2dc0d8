"""What a running import shows while it works: its phase, its progress, and its safe points.

The run notes its step (`phase`) and its progress (bytes read, bytes total, rows read) on its
ImportRun object as it goes. Others see them (the run row the dashboard and the API read, the
task state Flower shows) once the run has lasted VISIBLE_AFTER_SECONDS: from then on each step
is published as it starts and the progress at most once a second, each time with a check
whether the run was cancelled, before anything of it is committed. A run that ends sooner
(a small file, a few tens of milliseconds) publishes nothing while it runs, since nobody could
have watched it: what it reached is written with its counts and its end (RUN_NOTES in
schedules.services), and its merge's commit is its safe point (record_committed_counts).
The listeners of this process (the `run_import` command's bar) hear every report.
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

from ..errors import RunCancelled, RunDeleted

logger = logging.getLogger("importbeat.importer")


PROGRESS_EVERY_SECONDS = 1.0


# A run younger than this publishes nothing while it runs (a dashboard polls every few
# seconds; a 100-row run lasts some 40 ms). Its phase and progress writes, cancel checks and
# task state updates were 8 of its 38 statements and a third of its worker CPU.
VISIBLE_AFTER_SECONDS = 0.5


Progress = Callable[[dict[str, int | None]], None]


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
    # Per-step timings at DEBUG: where a slow import spends its time.
    started = time.perf_counter()
    yield
    logger.debug("run %s: %s took %.3fs", run.pk, step, time.perf_counter() - started)


class ProgressReporter:
    """Notes a run's step and progress; publishes them once the run can be seen (see above).

    `hook` is the run's task state (what Flower shows): published with the run row.
    """

    def __init__(self, run: ImportRun, counts: RunCounts, hook: Progress | None) -> None:
        self.run = run
        self.counts = counts
        self.hook = hook
        self.listeners = _listeners.get()
        self.bytes = 0
        self.bytes_total: int | None = None
        self._started = time.monotonic()
        self._published: float | None = None  # when the run row was last written

    def bytes_read(self, total: int) -> None:
        self.bytes = total

    def due(self) -> bool:
        """Time to publish: the run has just become visible, or a second passed since."""
        if self._published is None:
            return self.visible()
        return time.monotonic() - self._published >= PROGRESS_EVERY_SECONDS

    def report_if_due(self) -> None:
        if self.due():
            self.report()

    def step(self, phase: str) -> None:
        """The run starts a step the dashboard names (download, staging, checks, merge)."""
        self.run.phase = phase
        if self.visible():
            self.report()

    def visible(self) -> bool:
        return time.monotonic() - self._started >= VISIBLE_AFTER_SECONDS

    def report(self) -> None:
        progress = {
            "bytes_read": self.bytes,
            "bytes_total": self.bytes_total,
            "rows_read": self.counts.rows_read,
        }
        run = self.run
        run.bytes_read, run.bytes_total = self.bytes, self.bytes_total
        run.rows_read = self.counts.rows_read
        published = self.visible()
        if published:
            self._published = time.monotonic()
            services.record_progress(run)
            if self.hook is not None:
                self.hook(progress)
        for listener in self.listeners:
            listener(progress)
        if published:
            stop_if_cancelled(run)


def stop_if_cancelled(run: ImportRun) -> None:
    """A safe point: nothing of this attempt is committed yet, so stopping here leaves the
    dataset as it was (services.cancel_run)."""
    cancelled = services.cancel_requested(
        run.pk, run.scheduled_import_id, task_id=run.celery_task_id
    )
    if cancelled in services.GONE_WHILE_RUNNING:
        raise RunDeleted(cancelled)
    if cancelled:
        raise RunCancelled(cancelled)
