"""gunicorn's settings for `web`: gunicorn reads `./gunicorn.conf.py` by itself when it starts
without `-c`, so the Procfile's and compose's command and one an operator writes by hand in
this directory all get it (with `-c python:project.gunicorn_config`, as before, a hand-written
command without it lost the hook, and its long exports and deletions were killed).

Server hooks only: the command line keeps the settings an operator tunes (bind, workers).
"""

from __future__ import annotations

import os
from typing import Any

from common import database_tls, streaming, web_statements


def when_ready(server: Any) -> None:
    # Once per web start, in the arbiter: a DATABASE_URL to another host whose TLS checks
    # nothing (common/database_tls.py; the worker and beat say it at their start too).
    if words := database_tls.unchecked_url(os.environ.get("DATABASE_URL", "")):
        server.log.warning("%s", words)


def post_worker_init(worker: Any) -> None:
    # A streamed response (a dataset's export) tells the arbiter this worker is alive as it
    # makes progress, instead of being killed mid-stream after --timeout, and its client is cut
    # off once it stops taking it (common/streaming.py).
    streaming.install(worker.notify, worker.cfg.timeout)
    # Its arbiter no longer sees a threaded worker's request: PostgreSQL ends a statement that
    # outlasts the timeout instead (common/web_statements.py).
    web_statements.install(worker.cfg.timeout)
    # Checks of a source may hold half of this process's threads: the threads gunicorn runs,
    # not only the WEB_THREADS the Procfile passes (a hand-written `--threads 8`, or none, is
    # what serves). Imported here: the app, and Django with it, is loaded by now.
    from schedules import check_slots

    check_slots.record_threads(worker.cfg.threads)
