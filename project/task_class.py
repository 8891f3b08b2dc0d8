"""Every importbeat task's class (the app's task_cls), and how a worker handles its messages.

- A task's ETA is read in the database's time (project.task_eta).
- A task killed at its hard time limit fails in words, and a run's attempt so killed is ended
  at once (tasks.killed_runs). Celery sent its `task-failed` events with billiard's wrapper of
  the time limit, `ExceptionWithTraceback()`, an empty text that Flower kept for the task.
"""

from __future__ import annotations

from typing import Any

from billiard.einfo import ExceptionWithTraceback
from celery import Task
from celery.exceptions import TimeLimitExceeded

from project.task_eta import DatabaseTimedRequest


class ImportbeatRequest(DatabaseTimedRequest):
    """A message a worker received, as importbeat handles it."""

    killed_words: str | None = None

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
        if self.killed_words is None:
            # (imported here: the app loads its task class before Django's models are ready)
            from tasks import killed_runs

            _hard, soft = self.time_limits
            self.killed_words = killed_runs.words_when_killed(
                self.task.name, self.id, self.args, timeout, soft, self.worker_pid
            )

    def on_retry(self, exc_info: Any) -> None:
        super().on_retry(exc_info)
        # (imported here: the app loads its task class before Django's models are ready)
        from tasks import lost_tasks

        lost_tasks.end_retried_task(self.task.name, self.id, self.args, self.hostname)

    def send_event(self, type: str, **fields: Any) -> None:
        if type == "task-failed" and self.killed_words is not None:
            fields["exception"] = self.killed_words
        super().send_event(type, **fields)


class ImportbeatTask(Task):
    """Every importbeat task (the app's task_cls)."""

    Request = "project.task_class:ImportbeatRequest"
