"""Every importbeat task's class (the app's task_cls), and how a worker handles its messages.

- A task's ETA is read in the database's time (project.task_eta).
- A task killed at its hard time limit fails in words, and a run's attempt so killed is ended
  at once (tasks.killed_runs). Celery sent its `task-failed` events with billiard's wrapper of
  the time limit, `ExceptionWithTraceback()`, an empty text that Flower kept for the task.
- A killed run that ended well (its rows had committed, or its owner had asked it to stop)
  succeeds in Flower with the run's summary, as the run log says: its task failed there, "run
  11 succeeded: ". The success replaces Celery's `task-failed` events: a failure told first
  stays in Flower's Failed counter, which counts events.
- A killed task's end is told once. Celery tells the kill twice (the pool's result, then the
  timeout), and Flower counted two failed tasks for one run timed out. A run the worker could
  not end at once is told by whatever ends it (KilledTask.told_when_ended), not here too.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from billiard.einfo import ExceptionWithTraceback
from celery import Task
from celery.exceptions import TimeLimitExceeded
from celery.utils.saferepr import saferepr

from project.task_eta import DatabaseTimedRequest

if TYPE_CHECKING:
    from tasks.killed_runs import KilledTask


class ImportbeatRequest(DatabaseTimedRequest):
    """A message a worker received, as importbeat handles it."""

    killed: KilledTask | None = None
    _told_killed_end: bool = False

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False):
        # The pool reports the kill here first (its job's result), then by on_timeout.
        wrapped = exc_info.exception
        if isinstance(wrapped, ExceptionWithTraceback) and isinstance(
            wrapped.exc, TimeLimitExceeded
        ):
            self._killed(wrapped.exc.args[0] if wrapped.exc.args else None)
        return super().on_failure(exc_info, send_failed_event, return_ok)

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if not soft:
            self._killed(timeout)
        super().on_timeout(soft, timeout)

    def _killed(self, timeout: float | None) -> None:
        if self.killed is None:
            # (imported here: the app loads its task class before Django's models are ready)
            from tasks import killed_runs

            _hard, soft = self.time_limits
            self.killed = killed_runs.ending_when_killed(
                self.task.name, self.id, self.args, timeout, soft, self.worker_pid
            )

    def on_retry(self, exc_info: Any) -> None:
        super().on_retry(exc_info)
        # (imported here: the app loads its task class before Django's models are ready)
        from tasks import lost_tasks

        lost_tasks.end_retried_task(self.task.name, self.id, self.args, self.hostname)

    def send_event(self, type: str, **fields: Any) -> None:
        if type == "task-failed" and self.killed is not None:
            if self._told_killed_end or self.killed.told_when_ended:
                return
            self._told_killed_end = True
            if self.killed.result is not None:
                self._tell_killed_success(self.killed.result)
                return
            fields["exception"] = self.killed.words
        super().send_event(type, **fields)

    def _tell_killed_success(self, result: dict[str, Any]) -> None:
        runtime = time.time() - self.time_start if self.time_start else None
        super().send_event(
            "task-succeeded",
            result=saferepr(result, self.task.resultrepr_maxsize),
            runtime=runtime,
        )


class ImportbeatTask(Task):
    """Every importbeat task (the app's task_cls)."""

    Request = "project.task_class:ImportbeatRequest"
