"""A credential an import no longer has, hidden in what was saved under it.

The runner hides an import's credential wherever a source repeated it in what it saves of a
run (services.without_secrets), and saved_secrets hides the current one in runs saved before
the runner did. Neither can know a credential once it is replaced or removed, so the runs saved
under the old one kept it in plain text. At the change it is known: ScheduledImport.save(),
which every surface goes through (the API, the admin, a command, code), keeps it as it was
saved, encrypted, in a ReplacedCredential row written in the change's own transaction; a
worker then hides it in the import's runs and in the Celery results still kept of their tasks
(saved_secrets' hiding, with that credential), and deletes the row.

On a worker, not in the request: an import with 100,000 runs with a text takes seconds to pass
over (batches of saved_secrets.BATCH_SIZE, each its own short transaction, memory flat), too
long for an API call or an admin page. The task's message names the row by its id only, so
the old secret is never in the broker, a task result or a log line: it waits in the database
as encrypted as the credential was, and goes with its row. A message lost (the broker down at
the change, Redis restarted) is sent again by the sweep (resend_stale); a job cut short
resumes after the last batch it wrote (done_until). Hiding twice changes nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery import current_app

from common import database_clock

from . import after_commit, saved_secrets
from .models import ImportRun, ReplacedCredential, ScheduledImport

logger = logging.getLogger("importbeat.credentials")

HIDE = "importbeat.hide_replaced_credential"


def remember(imp: ScheduledImport, token: str) -> ReplacedCredential:
    """Keep `token` (the credential `imp` had, encrypted as saved) for its runs to be hidden of
    it; in the caller's transaction, its job sent once that commits."""
    replaced = ReplacedCredential.objects.create(scheduled_import=imp, secret=token)
    # A broker that is down or full must not undo nor fail the change; the sweep sends it.
    after_commit.send_after_commit(
        lambda: send(replaced.pk),
        f"the hiding of replaced credential={replaced.pk}",
        "the sweep sends it",
    )
    return replaced


def send(replaced_id: int) -> None:
    current_app.send_task(HIDE, args=[replaced_id])


def hide(replaced_id: int, batch_size: int = saved_secrets.BATCH_SIZE) -> dict[str, Any] | None:
    """Hide the replaced credential in its import's runs, then in their kept task results, and
    forget it. None when it is gone already (done by a message sent twice, or its import
    deleted with its runs). A result backend that does not answer raises (RedisError): the row
    stays, the runs done, and the sweep sends the job again."""
    replaced = ReplacedCredential.objects.filter(pk=replaced_id).first()
    if replaced is None:
        return None
    import_id = replaced.scheduled_import_id
    if saved_secrets.secrets_if_readable(replaced.secret) is None:
        logger.error("import=%s: a credential it had is not hidden in its runs: no configured "
                     "IMPORTBEAT_ENCRYPTION_KEY opens it any more", import_id)  # fmt: skip
        replaced.delete()
        return {"import": import_id, "runs": 0, "results": 0, "unreadable": True}
    runs = ImportRun.objects.filter(scheduled_import_id=import_id)

    def done(last_run_id: int) -> None:
        ReplacedCredential.objects.filter(pk=replaced_id).update(
            done_until=last_run_id, touched_at=database_clock.now()
        )

    in_runs = saved_secrets.hide_in_runs(
        ImportRun, batch_size, runs=runs, token=replaced.secret,
        after=replaced.done_until, done=done,
    )  # fmt: skip
    in_results = saved_secrets.hide_in_results(
        ImportRun, batch_size, runs=runs, token=replaced.secret
    )
    replaced.delete()
    changed = {
        "import": import_id,
        "runs": in_runs.changed,
        "results": in_results.changed if in_results is not None else 0,
    }
    logger.info("import=%(import)s: a credential it had hidden in %(runs)s run(s) and "
                "%(results)s kept task result(s)", changed)  # fmt: skip
    return changed


def resend_stale(touched_before: datetime) -> int:
    """Send again the jobs of replaced credentials untouched since `touched_before`: their
    message never reached the broker, was lost, or its worker stopped. At least once: a job
    only slow to start does its work twice, which changes nothing."""
    stale = ReplacedCredential.objects.filter(touched_at__lt=touched_before).order_by("pk")
    ids = list(stale.values_list("pk", flat=True)[:500])
    for replaced_id in ids:
        send(replaced_id)
    ReplacedCredential.objects.filter(pk__in=ids).update(touched_at=database_clock.now())
    return len(ids)
