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
- A task whose failure was told already (tasks.lost_tasks.ToldFailed: an attempt stopped alive
  after the sweep took it for lost and told FAILURE) fails without telling it again: Flower
  counts events, and counted two ends of one attempt.
- A failed or retried task's stored state keeps the end of its traceback at most, or none
  (ImportbeatTask.stored_traceback_chars): a run's failure and each of its waits kept 0.8-1.1
  kB of the runner's frames in Redis for a day, where the run log holds what went wrong.
- A task's state, once its end is stored (SUCCESS, FAILURE, REVOKED), is not replaced by a later
  state of one of its attempts (RETRY, PROGRESS: _EndKept), and a retry that found the end
  there is not announced to Flower (ImportbeatRequest.on_retry). A retry due at once went to
  another worker, which failed the run for good and stored FAILURE before the first worker
  stored its RETRY: Celery guards only SUCCESS, and the task said RETRY (AsyncResult, Flower)
  of a run its log called failed (latestate hunt).
- A result backend whose Redis user may not run that script (an ACL without EVALSHA or SCRIPT
  LOAD, or the commands renamed away) stores RETRY and PROGRESS as Celery does, said once a
  minute at most: refused, a wait's retry failed inside Celery's tracer, which stored FAILURE
  ("auth:NoPermissionError") for a run that went on waiting, and a run's PROGRESS was lost at
  DEBUG, where Celery's writes had stored both (reviewB hunt).
- A task that failed, was retried, rejected or ignored lets go of its exception's traceback
  once Celery is done with it (_tracebacks_forgotten): a pool process kept every such task's
  frames and billiard's copy of them (some 185 kB a failed run) until a full garbage
  collection, rare in a process as big as a worker's, and grew by about 120 MB with failed runs.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import weakref
from typing import TYPE_CHECKING, Any

from billiard.einfo import ExceptionWithTraceback
from celery import Task, states
from celery.exceptions import TimeLimitExceeded
from celery.signals import task_postrun
from celery.utils.saferepr import saferepr

from common.said_once import SaidOnce
from project.task_eta import DatabaseTimedRequest

if TYPE_CHECKING:
    from tasks.killed_runs import KilledTask

logger = logging.getLogger("importbeat.worker")


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
        if getattr(getattr(wrapped, "exc", wrapped), "told", False):
            send_failed_event = False  # told by whoever ended the attempt (tasks.lost_tasks)
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
        if _came_after_the_end(exc_info.exception):
            # Its task ended meanwhile (another worker ran the retried message and ended the
            # run, or a cancel stored REVOKED), and whoever ended it told Flower: announced,
            # `task-retried` replaced that end in Flower, which the run's end told again then
            # counted twice (lost_tasks.end_retried_task).
            if self.task.acks_late:
                self.acknowledge()
            return
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
    # How much of a failed or retried task's traceback its stored state keeps: its end, where
    # the error was raised (None: all of it). A task whose errors its own log holds keeps none
    # (tasks.tasks.execute_run: the run log). Celery stored it whole, kept a day.
    stored_traceback_chars: int | None = 2000

    @property
    def backend(self) -> Any:
        backend = self._backend if self._backend is not None else self.app.backend
        return _TracebacksBounded(backend, self.stored_traceback_chars)

    @backend.setter
    def backend(self, value: Any) -> None:
        self._backend = value


class _TracebacksBounded:
    """A task's result backend, which stores the end of a failure's or a retry's traceback at
    most (ImportbeatTask.stored_traceback_chars), and no state of an attempt over the task's
    end (_EndKept); anything else is the backend's own."""

    def __init__(self, backend: Any, chars: int | None) -> None:
        self._backend, self._chars = backend, chars

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def mark_as_failure(self, task_id: str, exc: Any, traceback: str | None = None, **kw: Any):
        return self._backend.mark_as_failure(task_id, exc, self._bounded(traceback), **kw)

    def mark_as_retry(
        self, task_id: str, exc: Any, traceback: str | None = None, request: Any = None, **_kw: Any
    ):
        stored = _EndKept.store(self._backend, task_id, exc, states.RETRY,
                                self._bounded(traceback), request)  # fmt: skip
        if stored is None:
            return self._backend.mark_as_retry(task_id, exc, self._bounded(traceback),
                                               request=request)  # fmt: skip
        if not stored and exc is not None:
            # Told to the worker's main process with the exception (pickled with its
            # attributes), which then does not announce the retry (ImportbeatRequest.on_retry).
            with contextlib.suppress(AttributeError, TypeError):
                setattr(exc, _AFTER_THE_END, True)
        return exc

    def store_result(
        self, task_id: str, result: Any, state: str, traceback: str | None = None,
        request: Any = None, **kw: Any,
    ):  # fmt: skip
        # (a task's update_state: PROGRESS)
        if _EndKept.store(self._backend, task_id, result, state, traceback, request) is None:
            return self._backend.store_result(task_id, result, state, traceback=traceback,
                                              request=request, **kw)  # fmt: skip
        return result

    def _bounded(self, traceback: str | None) -> str | None:
        if not traceback or self._chars is None or len(traceback) <= self._chars:
            return traceback
        if self._chars <= 0:
            return None
        return "…\n" + traceback[-self._chars :]


# The mark a retry's exception gets when its task's end was stored before it (_EndKept).
_AFTER_THE_END = "importbeat_came_after_the_end"


def _came_after_the_end(exception: Any) -> bool:
    """Whether the retry `exception` (Celery's Retry, possibly in billiard's wrapper) found its
    task's end stored already, and did not replace it."""
    retry = exception.exc if isinstance(exception, ExceptionWithTraceback) else exception
    return bool(getattr(getattr(retry, "exc", None), _AFTER_THE_END, False))


class _EndKept:
    """A state stored only where no end is: Celery's Redis backend reads the state and writes
    over it in two steps, keeping only a SUCCESS, so that a worker's late RETRY (its message
    sent, its state stored a moment later, the retried message run and ended meanwhile
    elsewhere) or a presumed-lost attempt's PROGRESS replaced a FAILURE or a REVOKED. One
    script: the end, if stored, stays; anything else is written as Celery writes it (kept
    backend.expires seconds, published on the key for AsyncResult.get)."""

    SCRIPT = """
local stored = redis.call('GET', KEYS[1])
if stored then
  local ok, meta = pcall(cjson.decode, stored)
  if ok and type(meta) == 'table' and (meta['status'] == 'SUCCESS'
      or meta['status'] == 'FAILURE' or meta['status'] == 'REVOKED') then
    return 0
  end
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SETEX', KEYS[1], ARGV[2], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""

    @classmethod
    def store(
        cls, backend: Any, task_id: str, result: Any, state: str, traceback: str | None,
        request: Any,
    ) -> bool | None:  # fmt: skip
        """Store `state` unless the task's end is stored: whether it was; None when it is the
        backend's to store (an end itself; a backend other than Redis, or one whose stored
        states the script cannot read: results not serialized as JSON; or whose Redis user may
        not run the script: _SCRIPT_REFUSED)."""
        from celery.backends.redis import RedisBackend
        from kombu.utils.encoding import bytes_to_str
        from redis.exceptions import ResponseError

        if (
            state in states.READY_STATES
            or _scripts.get(backend) is _REFUSED
            or not isinstance(backend, RedisBackend)
            or backend.serializer != "json"
            or backend.app.conf.result_compression
        ):
            return None
        encoded = backend.encode_result(result, state)
        meta = backend._get_result_meta(
            result=encoded, state=state, traceback=traceback, request=request
        )
        meta["task_id"] = bytes_to_str(task_id)
        key, value = backend.get_key_for_task(task_id), backend.encode(meta)
        try:
            # (with the backend's own retries when Redis is away, as its own writes)
            return bool(backend.ensure(cls._stored, (backend, key, value)))
        except ResponseError as refused:
            if not _SCRIPT_REFUSED.search(str(refused)):
                raise  # (a key or channel its ACL refuses: Celery's own write is refused too)
            _scripts[backend] = _REFUSED
            _say_script_refused(backend, refused)
            return None

    @classmethod
    def _stored(cls, backend: Any, key: bytes, value: str) -> int:
        script = _scripts.get(backend)
        if script is None:
            script = _scripts[backend] = backend.client.register_script(cls.SCRIPT)
        return script(keys=[key], args=[value, int(backend.expires or 0)])


# Each backend's script; _REFUSED for one whose Redis user may not run it (Celery stores then).
_scripts: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_REFUSED = object()
# A worker's pool processes each meet the refusal once: one of them says it (common.said_once).
_said = SaidOnce()


# Redis's refusal of the script itself (EVALSHA, or SCRIPT LOAD after a restart emptied its
# scripts), not of the task's key or channel: by its user's ACL (NOPERM), or by a server whose
# configuration renamed the commands away (rename-command EVALSHA "": unknown command).
_SCRIPT_REFUSED = re.compile(
    r"(no permissions to run the|unknown command) ['`](evalsha|script)", re.IGNORECASE
)


def _say_script_refused(backend: Any, error: Exception) -> None:
    from common import error_words

    place = error_words.broker_place(backend.url or backend.app.conf.result_backend,
                                     "the result backend")  # fmt: skip
    words = (
        f"{place} runs no scripts for its Redis user (EVALSHA and SCRIPT LOAD refused): a task's "
        "RETRY and PROGRESS are stored as Celery stores them, and one stored late may replace "
        "the task's end (SUCCESS, FAILURE, REVOKED); allow +evalsha +script|load in the user's "
        "ACL (and do not rename them away), then restart the workers"
    )
    again = _said.again(words)
    if again is not None:
        logger.warning("%s%s", words, again)
    logger.debug("the script was refused: %s", error_words.log_text(error))


@task_postrun.connect
def _tracebacks_forgotten(task: Task, retval: Any, **_kwargs: Any) -> None:
    """A task that failed, was retried, rejected or ignored lets go of its exception's traceback
    once Celery has stored, logged and told it (its text formatted in billiard's ExceptionInfo,
    which the pool sends the worker a copy of).

    The traceback reaches Celery's trace_task frame, whose locals hold that ExceptionInfo, which
    holds the exception: a cycle that only a full collection frees, some 600 failed runs apart
    in a worker, the pool process's memory growing meanwhile (185 kB a failed run, mostly
    billiard's copy of trace_task's code positions). Without it, all of it goes as the task
    ends. An eager call (a test's) keeps it: its caller may raise it again."""
    if isinstance(retval, BaseException) and not task.request.is_eager:
        forget_tracebacks(retval)


def forget_tracebacks(error: BaseException) -> None:
    """Drop the traceback of `error`, of the errors it was raised from or during, and of a
    retry's reason (Retry.exc): each holds the frames it passed through, and their locals."""
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending += [current.__cause__, current.__context__, getattr(current, "exc", None)]
