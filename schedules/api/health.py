"""Dependency checks behind `GET /api/v1/health`.

The database and the broker are required (503 when either is down); beat and the workers are
reported so that an operator sees a stalled scheduler or an empty cluster, but the web process
itself can still serve the API without them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

logger = logging.getLogger(__name__)


def check_database() -> dict[str, Any]:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:
        return {"ok": False, "error": _error(error)}
    return {"ok": True, "latency_ms": _ms(started)}


def check_broker() -> dict[str, Any]:
    from project.celery import app

    started = time.monotonic()
    try:
        with app.connection_for_write() as conn:
            # One attempt with a short timeout: a health check must answer even when the
            # broker does not.
            conn.ensure_connection(
                max_retries=1,
                interval_start=0,
                interval_step=0,
                timeout=settings.HEALTH_BROKER_TIMEOUT,
            )
            conn.default_channel  # noqa: B018 (opening the channel is what proves the broker)
    except Exception as error:
        return {"ok": False, "error": _error(error)}
    return {"ok": True, "latency_ms": _ms(started)}


def check_beat() -> dict[str, Any]:
    """Is a beat leading, and when did beat last dispatch?

    A live beat renews its leader lease in Redis every few seconds (project.beat), so a held
    lease means a beat is running now. The last tick is the newest `PeriodicTask.last_run_at`
    (written by beat when it sends an entry, saved on its next sync) or a scheduled run's
    `queued_at`, whichever is newer.
    """
    from django.db.models import Max
    from django_celery_beat.models import PeriodicTask

    from project.beat import LEADER_LEASE
    from schedules.models import ImportRun
    from tasks.locks import client

    try:
        value = client().get(LEADER_LEASE)
        leader = value.decode().rsplit(":", 1)[0] if value else None
    except Exception as error:
        _error(error)  # logged; the broker check reports Redis itself
        leader = None
    try:
        last_sent = PeriodicTask.objects.aggregate(at=Max("last_run_at"))["at"]
        last_run = ImportRun.objects.filter(trigger=ImportRun.Trigger.SCHEDULE).aggregate(
            at=Max("queued_at")
        )["at"]
    except Exception as error:
        return {"ok": False, "leader": leader, "last_tick": None, "error": _error(error)}
    last_tick = max((t for t in (last_sent, last_run) if t), default=None)
    age = (timezone.now() - last_tick).total_seconds() if last_tick else None
    return {
        "ok": leader is not None,
        "leader": leader,
        "last_tick": last_tick,
        "seconds_ago": _round(age),
    }


def check_workers() -> dict[str, Any]:
    from project.celery import app

    try:
        replies = app.control.ping(timeout=settings.HEALTH_WORKER_PING_TIMEOUT) or []
    except Exception as error:
        return {"ok": False, "count": 0, "workers": [], "error": _error(error)}
    names = sorted(name for reply in replies for name in reply)
    return {"ok": bool(names), "count": len(names), "workers": names}


def report() -> tuple[dict[str, Any], bool]:
    """All checks, and whether the required ones (database, broker) passed."""
    checks: dict[str, Any] = {"database": check_database(), "broker": check_broker()}
    checks["beat"] = check_beat() if checks["database"]["ok"] else {"ok": False, "last_tick": None}
    checks["workers"] = (
        check_workers() if checks["broker"]["ok"] else {"ok": False, "count": 0, "workers": []}
    )
    healthy = checks["database"]["ok"] and checks["broker"]["ok"]
    degraded = not (checks["beat"]["ok"] and checks["workers"]["ok"])
    status = "down" if not healthy else ("degraded" if degraded else "ok")
    return {"status": status, "time": timezone.now(), "checks": checks}, healthy


def for_caller(body: dict[str, Any], staff: bool) -> dict[str, Any]:
    """What a caller may see of a finished report: everything for staff, statuses for others.

    The endpoint is public (load balancers call it without a token), and the names in the
    details (beat's host and pid, the workers' host names) map the cluster for an attacker.
    """
    if staff:
        return body
    checks = {name: {"ok": bool(check.get("ok"))} for name, check in body["checks"].items()}
    return {"status": body["status"], "time": body["time"], "checks": checks}


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _error(error: Exception) -> str:
    # The endpoint is public: name the failure, keep hosts and credentials in the log.
    logger.warning("health check failed: %s", error)
    return type(error).__name__
