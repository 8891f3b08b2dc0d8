"""`python manage.py run_import IMPORT_ID`: run an import now, in this process, with no worker."""

from __future__ import annotations

import gc
import logging
import signal
import time
import uuid
from contextlib import contextmanager, suppress
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from schedules import history, services
from schedules.models import ImportRun, ScheduledImport
from schedules.text import printable
from tasks import engine, runner

OK_STATUSES = (ImportRun.Status.SUCCEEDED, ImportRun.Status.PARTIAL)
INTERRUPTED = (
    "stopped in the foreground (run_import was interrupted: Ctrl-C, SIGTERM or a hang-up) "
    "before its rows were written"
)
# What stops a foreground run: Ctrl-C, a `kill` or a container stopping, a terminal hanging up
# (an ssh session dropped: the process died at once, the run left `running`).
STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SHOWN_ROW_ERRORS = 10
# A worker's hard limit comes this long after its soft one (services.run_message's options):
# a statement stuck where the soft limit cannot reach it is ended as late.
HARD_LIMIT_AFTER_SECONDS = 30
# A run deleted while it waited its turn (overlap: queue), alone (the README's way to stop a
# queued run) or with its import: it never ran. It was said "its import was deleted while it
# ran" (review1).
RUN_DELETED_WHILE_WAITING = "it was deleted while it waited its turn; it did not run"
IMPORT_DELETED_WHILE_WAITING = "its import was deleted while it waited its turn; it did not run"
# A run waiting its turn is said once, and again when it waits for another reason; meanwhile a
# reminder this often says it still waits (an import's timeout may be an hour of waiting).
WAIT_REMINDER_SECONDS = 60
# The runner's logger: at each look at the lease it says the run waits (tasks.runner._come_back).
RUNNER_LOGGER = "importbeat.runs"


class Command(BaseCommand):
    help = (
        "Run an import now in this process (no worker), logged as a run with trigger "
        "'manual'; shows a progress bar on a terminal and the run's counts at the end. "
        "Exits 0 when the run succeeded or partly succeeded (its row errors listed), non-zero "
        "otherwise (130 when interrupted)."
    )
    # The system checks load the URLconf, the admin and the API (~0.4 s): measured in every
    # foreground import and of no use to it; `manage.py check` and the server still run them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("import_id", type=int, help="id of the ScheduledImport")
        parser.add_argument(
            "--no-progress", action="store_true", help="no progress bar, even on a terminal"
        )

    def handle(self, *args: Any, import_id: int, no_progress: bool, **options: Any) -> None:
        # Django's start-up leaves ~100,000 objects that live as long as this process. Out of
        # the collector's sight, neither the run's collections nor the interpreter's teardown
        # walk them: the teardown alone took 0.3-0.4 s of every foreground import.
        gc.freeze()
        imp = ScheduledImport.objects.filter(pk=import_id).first()
        if imp is None:
            raise CommandError(f"there is no import with id {import_id}")
        if not imp.owner.is_active:
            # As the API and the admin refuse it: it ran, fetching and writing for an account
            # closed (ops hunt).
            raise CommandError(f"import {imp.pk}: {services.OWNER_INACTIVE}")
        # The same path as a worker: a run row, then the runner (lease, claim, retries
        # recorded, counters); only the Celery task is missing. Its task id is one no message
        # carries: without one, after a database restore, a message of the run that had its id
        # before ran it (under that run's time limit), and this attempt, if it lived through
        # the restore, ended the new run that took its id with its own rows (restore2 hunt).
        run = ImportRun.objects.create(
            scheduled_import=imp, trigger=ImportRun.Trigger.MANUAL, celery_task_id=str(uuid.uuid4())
        )
        self._task_id = run.celery_task_id
        # Its statements may take as long as the run may, whatever statement_timeout the server
        # sets (a worker's pool process does the same: project/worker_connections.py); the
        # run's own limit ends it first (_time_limit).
        hard_limit = imp.timeout_seconds + HARD_LIMIT_AFTER_SECONDS
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, false)", [f"{hard_limit}s"])
        history.record_event(imp, "run triggered", None, run=run.pk)
        # Everything stored is printed through `printable`: a name, a URL or a file's value
        # could carry escape sequences that the operator's terminal would obey. Plain, not in
        # the error colour Django gives stderr: it is a header, not a failure.
        self.stderr.write(
            f"import {imp.pk} ({printable(imp.name)}): run {run.pk} "
            f"from {printable(imp.source_url)}",
            style_func=lambda text: text,
        )
        ended: dict[str, Any] | None = None
        # Whether the run was last seen waiting its turn: a run gone then never ran.
        self._waiting = False
        # When the run began to wait its turn, and when the next reminder is due.
        self._waiting_since: float | None = None
        self._remind_at = 0.0
        try:
            with _stops_as_interrupt(), _said_once(logging.getLogger(RUNNER_LOGGER)):
                ended = self._execute(run, imp.timeout_seconds, no_progress)
                # overlap: queue, another run in progress: it waits, as a worker's run does,
                # looking again until it runs or is skipped after its timeout.
                while ended is None and self._waits(run):
                    time.sleep(runner.queue_poll_seconds())
                    self._waiting = False
                    ended = self._execute(run, imp.timeout_seconds, no_progress)
        except KeyboardInterrupt:
            self._interrupted(run)
        self._refresh_or_gone(run, ended)
        self._print_summary(run)
        if run.status not in OK_STATUSES:
            # (a skipped run's message begins "skipped: ": said once)
            said = run.error_message.removeprefix(f"{run.status}: ")
            raise CommandError(f"run {run.pk} {run.status}: {printable(said)}")

    def _execute(
        self, run: ImportRun, timeout_seconds: int, no_progress: bool
    ) -> dict[str, Any] | None:
        """One go at the run, as one delivery of its message to a worker, under the import's
        time limit (as it was when the command started: read from the run after a wait, whose
        refresh drops the cached import, an import deleted meanwhile raised DoesNotExist, a
        traceback; the runner says the run gone in words)."""
        with _time_limit(timeout_seconds):
            if no_progress or not self.stderr.isatty():
                return runner.execute(run.pk)
            with self._progress_bar() as hook, engine.listen(hook):
                return runner.execute(run.pk)

    def _waits(self, run: ImportRun) -> bool:
        """The run is still queued, waiting for another run of its import; said once."""
        said = run.error_message
        # The runner found nothing to run, or left the run waiting: gone now, it never ran.
        self._waiting = True
        self._refresh_or_gone(run, None)
        waits = run.status == ImportRun.Status.QUEUED and run.error_message.startswith(
            services.WAITING_ITS_TURN
        )
        now = time.monotonic()
        if waits and run.error_message != said:
            self.stderr.write(
                f"run {run.pk} is {printable(run.error_message)}", style_func=lambda text: text
            )
            self._waiting_since = self._waiting_since or now
            self._remind_at = now + WAIT_REMINDER_SECONDS
        elif waits and self._waiting_since is not None and now >= self._remind_at:
            # Said once, the wait was then silent for up to the import's whole timeout: a
            # reminder that the command is alive and still waits, not a line at each look.
            self.stderr.write(
                f"run {run.pk} still waits its turn ({_for_how_long(now - self._waiting_since)} "
                "so far)",
                style_func=lambda text: text,
            )
            self._remind_at = now + WAIT_REMINDER_SECONDS
        return waits

    def _interrupted(self, run: ImportRun) -> None:
        """Ctrl-C or SIGTERM stopped the run: it ends here, as its rows left it, and the command
        says so. Left `running`, it answered every trigger with a 409 until the sweep took it
        for a lost worker's run and sent it to a worker: the import the operator stopped ran
        after all (and printed a traceback on the way)."""
        # Ctrl-C pressed again (or a hang-up after it) while the run is ended: it cut the
        # ending short, with a traceback, the run left `running` (ops hunt).
        for stop in STOPS:
            signal.signal(stop, signal.SIG_IGN)
        # The statement under way may have been cut in the middle: a new session finishes it.
        connection.close()
        self._refresh_or_gone(run, None)
        if run.status not in ImportRun.FINAL_STATUSES:
            if run.rows_committed_at is not None:
                services.finish_run(run, services.committed_status(run))
            else:
                services.finish_run(run, ImportRun.Status.CANCELLED, error=INTERRUPTED)
        self._refresh_or_gone(run, None)
        with suppress(OSError):  # (a terminal hung up takes no more words)
            self._print_summary(run)
        raise CommandError(f"run {run.pk} {run.status}: interrupted", returncode=130)

    def _refresh_or_gone(self, run: ImportRun, ended: dict[str, Any] | None) -> None:
        """The run as it is now; a run deleted meanwhile (with its import, or alone) ends the
        command in the runner's words, not a traceback (ImportRun.DoesNotExist); without the
        runner's, in words for what was deleted (the run alone, or its import) and when (while
        it ran, or while it waited its turn and never ran)."""
        try:
            run.refresh_from_db()
        except ImportRun.DoesNotExist:
            said = (ended or {}).get("error") or self._gone_words(run)
            raise CommandError(f"run {run.pk} cancelled: {printable(said)}") from None
        if run.celery_task_id != self._task_id:
            # Another run under its id now (a database restored from a backup), or the sweep
            # sent it to a worker as lost: that run's status was printed, and an interrupt
            # ended it (restore2 hunt).
            said = (ended or {}).get("error") or services.TAKEN_OVER_WHILE_RUNNING
            raise CommandError(f"run {run.pk} cancelled: {printable(said)}")

    def _gone_words(self, run: ImportRun) -> str:
        import_there = ScheduledImport.objects.filter(pk=run.scheduled_import_id).exists()
        if self._waiting:
            return RUN_DELETED_WHILE_WAITING if import_there else IMPORT_DELETED_WHILE_WAITING
        return (
            services.RUN_DELETED_WHILE_RUNNING if import_there else services.DELETED_WHILE_RUNNING
        )

    @contextmanager
    def _progress_bar(self):
        # Imported here: tqdm's logging helper loads its notebook and asyncio variants, which
        # an import without a bar (cron, a pipe, --no-progress) would pay for at start-up.
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        bar = tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc="download",
                   file=self.stderr._out)  # fmt: skip

        def hook(progress: dict[str, int | None]) -> None:
            if progress.get("bytes_total") and bar.total != progress["bytes_total"]:
                bar.total = progress["bytes_total"]
            bar.n = progress.get("bytes_read") or 0
            bar.set_postfix(rows=progress.get("rows_read") or 0, refresh=False)
            bar.refresh()

        # Log lines go through tqdm.write above the bar instead of cutting it in two.
        try:
            with logging_redirect_tqdm():
                yield hook
        finally:
            bar.close()

    def _print_summary(self, run: ImportRun) -> None:
        seconds = (run.duration_ms or 0) / 1000
        self.stdout.write(f"run {run.pk}: {run.status} in {seconds:.2f}s")
        self.stdout.write(
            f"rows read {run.rows_read}, inserted {run.rows_inserted}, "
            f"updated {run.rows_updated}, unchanged {run.rows_unchanged}, "
            f"deleted {run.rows_deleted}, failed {run.rows_failed}"
        )
        for error in (run.error_details or {}).get("rows", [])[:SHOWN_ROW_ERRORS]:
            column = f" [{printable(error['column'])}]" if error.get("column") else ""
            self.stdout.write(f"  line {error['line']}{column}: {printable(error['reason'])}")
        if run.rows_failed > SHOWN_ROW_ERRORS:
            self.stdout.write(f"  ... see run {run.pk} for more row errors")
        if run.error_message and run.status not in OK_STATUSES:
            self.stdout.write(f"error: {printable(run.error_message)}")


def _for_how_long(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


class _SaidOnce(logging.Filter):
    """Drops a line the same as one already said: while the run waits its turn the runner looks
    at the lease again at each poll, and logged "run not started run=N: it waits for run M" at
    each (every 10 s, some 360 lines in an hour's wait). A wait for another run, or another
    reason, is another line, and said."""

    def __init__(self) -> None:
        super().__init__()
        self.said: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        line = (str(record.msg), repr(record.args))
        if line in self.said:
            return False
        self.said.add(line)
        return True


@contextmanager
def _said_once(log: logging.Logger):
    """`log`'s lines said once meanwhile (_SaidOnce)."""
    said = _SaidOnce()
    log.addFilter(said)
    try:
        yield
    finally:
        log.removeFilter(said)


@contextmanager
def _stops_as_interrupt():
    """SIGTERM (a `kill`, a container stopping) and SIGHUP (its terminal gone) stop the run as
    Ctrl-C does: they ended the process at once, with no word, the run left `running`. Once
    one came, the others are ignored: a second one, while the runner gave its lease back and
    the command ended the run, cut that short (review)."""
    stopped = False

    def interrupt(signum: int, frame: object) -> None:
        nonlocal stopped
        stopped = True
        for stop in STOPS:
            signal.signal(stop, signal.SIG_IGN)
        raise KeyboardInterrupt

    before = {stop: signal.signal(stop, interrupt) for stop in STOPS}
    try:
        yield
    finally:
        if not stopped:  # (stopped, the command ends the run and exits 130, ignoring them)
            for stop, handler in before.items():
                signal.signal(stop, handler)


@contextmanager
def _time_limit(seconds: int):
    """The import's time limit (`timeout_seconds`), as a worker's soft limit ends a run: the
    runner ends it `timed_out`. Without it a foreground run took as long as its download did
    (a run a worker ends `timed_out` succeeded here), and a long merge met the statement
    timeout instead, which read as an operator's cancel."""

    def expired(signum: int, frame: object) -> None:
        raise SoftTimeLimitExceeded(f"the run exceeded its {seconds}s time limit")

    before = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)
