"""The fields of an import not saved yet, waiting in Redis for the worker that checks them.

A check of an unsaved import (`POST /imports/check`, `?dry_run=true`) needs the import's fields,
its encrypted credential among them. A task's arguments are kept where we do not control them
(the broker's messages, the result backend, Flower's task list), and an encrypted credential
there is still a secret at rest; so the fields go to Redis under a random key with a short
expiry, the task names only the key, and the worker reads and deletes them in one step.
"""

from __future__ import annotations

import json
import math
import secrets
from typing import Any

import redis

from common.redis_client import client

PREFIX = "importbeat:check:"
# Past the page's wait nobody reads the answer; the margin covers a worker that took the
# message just before the page gave up.
MARGIN_SECONDS = 5


def put(fields: dict[str, Any], wait: float) -> str:
    """Keep `fields` for a check its caller waits `wait` seconds for; the key to hand a worker."""
    key = secrets.token_urlsafe(32)
    _redis().set(PREFIX + key, json.dumps(fields), ex=math.ceil(wait) + MARGIN_SECONDS)
    return key


def take(key: object) -> dict[str, Any] | None:
    """The fields kept under `key`, once (read and deleted in one transaction: a second take, or
    one after the expiry, finds None). A message from before this change carries the fields
    themselves: None as well, so that no credential is read from a task's arguments."""
    if not isinstance(key, str):
        return None
    # GET and DEL in MULTI rather than GETDEL, which Redis has only since 6.2.
    with _redis().pipeline(transaction=True) as pipe:
        kept, _ = pipe.get(PREFIX + key).delete(PREFIX + key).execute()
    return json.loads(kept) if kept is not None else None


def _redis() -> redis.Redis:
    # The Redis of leases and other short-lived state (and the suite runner's own database).
    return client()
