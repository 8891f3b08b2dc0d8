"""A source that repeats the credential it was sent, as a careless server does (a debug endpoint
that writes the request's headers into the file, a log turned into a CSV): the headers as they
arrived, the secret they carry decoded, and that secret percent-encoded and JSON-escaped."""

from __future__ import annotations

import base64
import csv
import io
import json
from urllib.parse import quote, quote_plus

import redis
from django.conf import settings

from tests.conftest import CsvServer, Route

# The file's columns: the key, then what the request carried (ECHOED).
COLUMNS = ["sku", "authorization", "key", "decoded", "raw", "quoted", "plus", "json", "json_utf8"]
ECHOED = COLUMNS[1:]
# A secret of every kind of character that some form writes differently: a space (`+`, `%20`),
# a slash, a quote and a backslash (JSON escapes them), a plus and an at sign. An HTTP header
# carries ASCII only; a basic password, sent base64-encoded, may be any text.
AWKWARD = 'pa55 w/"rd\\+@1'
AWKWARD_TEXT = AWKWARD + "-é"


def forms(secret: str) -> list[str]:
    """`secret` as the echo writes it: raw, percent-encoded (quote, quote_plus), JSON-escaped."""
    return [
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    ]


def sent_forms(credential: dict[str, str]) -> list[str]:
    """Every form of the credential's secret a request carries or a server may write back:
    the secret's forms(), and a basic pair's base64 (as sent) in its forms()."""
    secret = credential.get("password") or credential.get("token") or credential["value"]
    found = forms(secret)
    if credential["kind"] == "basic":
        pair = f"{credential['username']}:{secret}".encode()
        found += forms(base64.b64encode(pair).decode())
    return found


def leaks(shown: object, secrets: list[str]) -> list[str]:
    """The secrets found in any text of `shown` (texts, and dicts and lists of them)."""
    if isinstance(shown, dict):
        return leaks(list(shown.values()), secrets)
    if isinstance(shown, list | tuple):
        return sorted({leak for item in shown for leak in leaks(item, secrets)})
    return [secret for secret in secrets if isinstance(shown, str) and secret in shown]


def echoed(headers: dict[str, str]) -> list[str]:
    """What a request carried, in ECHOED's order: its Authorization and X-Api-Key headers, the
    basic pair decoded, and the secret (a basic password, a bearer token, the key) in forms()."""
    authorization, key = headers.get("Authorization", ""), headers.get("X-Api-Key", "")
    scheme, _, value = authorization.partition(" ")
    decoded = base64.b64decode(value).decode() if scheme == "Basic" else ""
    secret = key or (decoded.partition(":")[2] if decoded else value)
    return [authorization, key, decoded, *forms(secret)]


def echo(server: CsvServer, path: str, *, as_header: bool = False, pad: int = 0) -> str:
    """Serve at `path` a CSV of what each request carried (echoed): one row keyed A-1 under
    COLUMNS, or, `as_header`, the header row itself (where a run's message lists the columns).
    `pad`: that many x before each value echoed."""

    def route() -> Route:
        values = ["x" * pad + value if value else "" for value in echoed(server.requests[-1][1])]
        # Without repeats or empty names, which the header check would report first.
        rows = [list(dict.fromkeys(v for v in values if v))] if as_header else [COLUMNS]
        if not as_header:
            rows.append(["A-1", *values])
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        return Route(out.getvalue().encode())

    server.routes[path] = route
    return server.base_url + path


def watch_results() -> redis.client.PubSub:
    """A look at every task state the result backend stores from now on: the Redis backend
    publishes each (a retry's, a failure's) as it stores it. Read them with stored_states()."""
    watching = redis.Redis.from_url(settings.CELERY_RESULT_BACKEND).pubsub()
    watching.psubscribe("celery-task-meta-*")
    return watching


def stored_states(watching: redis.client.PubSub, task_id: str | None = None) -> list[dict]:
    """The states stored since watch_results(), as stored (JSON: status, result, traceback);
    only `task_id`'s when given. Redis publishes across its databases: the suite's other
    runners' states come too (one runner's test stores a secret in old results on purpose,
    tests/test_hide_run_secrets_hides_the_secret_in_celery_results_kept_of_old_runs.py)."""
    states = []
    while message := watching.get_message(timeout=2):
        if message["type"] == "pmessage":
            state = json.loads(message["data"])
            if task_id is None or state.get("task_id") == task_id:
                states.append(state)
    watching.close()
    return states
