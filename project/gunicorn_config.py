"""gunicorn's settings for the Procfile's and compose's `web` (`-c python:project.gunicorn_config`).

Only a server hook: the command line keeps the settings an operator tunes (bind, workers).
"""

from __future__ import annotations

from typing import Any

from common import streaming


def post_worker_init(worker: Any) -> None:
    # A streamed response (a dataset's export) tells the arbiter this worker is alive as it
    # makes progress, instead of being killed mid-stream after --timeout (common/streaming.py).
    streaming.install(worker.notify)
