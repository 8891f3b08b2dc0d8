"""Hide the source credential in the texts of runs saved before the runner hid it, and in the
Celery results still kept of them: what migration 0021 does when the encryption keys are
configured at migration time, for operators who migrated without them (schedules.saved_secrets).

Safe to run again, and while the workers run: hiding twice changes nothing, and a run written
meanwhile is left to the writer (which hides it itself).
"""

from __future__ import annotations

import logging

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from redis.exceptions import RedisError

from common import error_words
from schedules import credentials, saved_secrets
from schedules.models import ImportRun

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Hide each import's source credential where runs saved before it was hidden still show "
        "it (their messages, attempts, tracebacks and row errors, and the Celery results kept "
        "of their tasks). Needs IMPORTBEAT_ENCRYPTION_KEY."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=saved_secrets.BATCH_SIZE,
            help=f"runs read at a time (default {saved_secrets.BATCH_SIZE})",
        )

    def handle(self, *args, batch_size: int, **options) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be 1 or more")
        try:
            readable = credentials.keys_configured()
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        if not readable:
            raise CommandError(saved_secrets.NO_KEY)
        runs = saved_secrets.hide_in_runs(ImportRun, batch_size)
        self.stdout.write(runs.said("runs"))
        try:
            results = saved_secrets.hide_in_results(ImportRun, batch_size)
        except (RedisError, OSError) as error:
            words = error_words.unreachable("the result backend", error, logger)
            raise CommandError(
                f"the runs are done, but the Celery results were not looked at: {words}; run "
                f"the command again once it answers"
            ) from None
        if results is None:
            self.stdout.write("Celery results: not looked at (the result backend is not Redis)")
        else:
            self.stdout.write(results.said("Celery results kept of the runs"))
