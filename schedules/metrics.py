"""Prometheus `/metrics` on the web process (SPEC section 6), behind Flower's credentials.

Everything is read at scrape time from PostgreSQL and Redis, so every web process answers the
same figures, whichever gunicorn worker or container the scrape reaches. The counters come from
`RunTally` (kept by a trigger, never lowered by retention); the gauges from the run log, beat's
lease, the broker's queue and `schedules.overview`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    GaugeMetricFamily,
    Metric,
)
from redis.exceptions import RedisError

from common import database_clock
from common.redis_client import parked_by_turn
from common.security import lockout_response

from . import attention, metrics_guesses, metrics_per_import, notifications, overview
from .api import health
from .email_digest import WAITING as WAITING_DELIVERIES
from .models import ImportRun, NotificationDelivery, ScheduledImport


class ImportbeatCollector:
    """The families of one scrape without a series per import (those: metrics_per_import): a
    few aggregate queries, whatever the number of runs."""

    def collect(self) -> Iterator[Metric]:
        yield from self.state_gauges()
        yield from self.cluster_gauges()

    def state_gauges(self) -> Iterator[Metric]:
        in_progress = GaugeMetricFamily(
            "importbeat_runs_in_progress", "Runs queued, running or waiting to retry.",
            labels=["status"],
        )  # fmt: skip
        active = dict(
            ImportRun.objects.filter(status__in=ImportRun.ACTIVE_STATUSES)
            .values_list("status")
            .annotate(n=Count("id"))
        )
        for status in ImportRun.ACTIVE_STATUSES:
            in_progress.add_metric([status], active.get(status, 0))
        imports = GaugeMetricFamily("importbeat_imports", "Imports by status.", labels=["status"])
        counts = dict(ScheduledImport.objects.values_list("status").annotate(n=Count("id")))
        for status in ScheduledImport.Status.values:
            imports.add_metric([status], counts.get(status, 0))
        late = GaugeMetricFamily(
            "importbeat_imports_late", "Imports with a missed tick not yet made up."
        )
        late.add_metric([], attention.late_imports_count())
        yield from (in_progress, imports, late)

    def cluster_gauges(self) -> Iterator[Metric]:
        queue = GaugeMetricFamily(
            "importbeat_queue_depth", "Messages waiting on the broker.", labels=["queue"]
        )
        for name, depth in overview.queue_depth().items():
            if depth is not None:
                queue.add_metric([name], depth)
        beat = health.check_beat()
        leader = GaugeMetricFamily(
            "importbeat_beat_leader", "1 while a beat holds the leader lease, else 0."
        )
        leader.add_metric([], 1 if beat.get("leader") else 0)
        last_tick = GaugeMetricFamily(
            "importbeat_beat_last_tick_timestamp_seconds",
            "When beat last looked for due imports: each loop, every BEAT_MAX_LOOP_INTERVAL at "
            "most, dispatching or not (Unix time; absent before the first).",
        )
        if beat.get("last_tick"):
            last_tick.add_metric([], beat["last_tick"].timestamp())
        clock = GaugeMetricFamily(
            "importbeat_beat_clock_offset_seconds",
            "The database's clock minus the host clock of the beat that last looped (absent "
            "before the first loop).",
        )
        if beat.get("clock_offset_seconds") is not None:
            clock.add_metric([], beat["clock_offset_seconds"])
        yield from (queue, leader, last_tick, clock, *processed_retention_gauges())
        yield from backlog_gauges()
        yield from redis_gauges()
        yield from notification_gauges()
        yield from parked_notification_gauges()


def backlog_gauges() -> list[Metric]:
    """Ticks beat skipped because their import's earlier run still waited for a worker, in the
    current streak (also behind `/health`'s `backlog`). None while Redis does not tell."""
    check = health.check_backlog()
    if check["skipped_ticks"] is None:
        return []
    skipped = GaugeMetricFamily(
        "importbeat_ticks_skipped_behind_a_waiting_run",
        "Scheduled ticks skipped because their import's earlier run still waited for a worker, "
        "since the streak began (0 once none was skipped for 10 minutes).",
    )
    skipped.add_metric([], check["skipped_ticks"])
    return [skipped]


def redis_gauges() -> list[Metric]:
    """Whether each Redis importbeat uses (REDIS_URL's, and the broker's or the results' where
    they are servers of their own) may evict keys, and how many it did (also behind `/health`'s
    `redis`): an evicted run lock or message is lost without a word. A server that does not
    tell has no sample."""
    may_evict = GaugeMetricFamily(
        "importbeat_redis_may_evict",
        "1 while Redis has a memory cap and a maxmemory-policy other than noeviction, else 0.",
        labels=["server"],
    )
    evicted = GaugeMetricFamily(
        "importbeat_redis_evicted_keys",
        "Keys Redis evicted since it started (CONFIG RESETSTAT).",
        labels=["server"],
    )
    for server in health.check_redis()["servers"]:
        if server["policy"] is None:
            continue
        label = [server["at"] or ",".join(server["for"])]
        may_evict.add_metric(label, 1 if server["may_evict"] else 0)
        evicted.add_metric(label, server["evicted_keys"])
    return [may_evict, evicted]


def notification_gauges() -> list[Metric]:
    """The notifications still to deliver, and since when the oldest waits: a mail server or a
    callback that has not taken anything for an hour shows here for every import at once,
    where each import's delivery log shows only its own. Read through the index of waiting
    deliveries (delivery_waiting_idx), whatever the number delivered."""
    waiting = NotificationDelivery.objects.filter(status__in=WAITING_DELIVERIES)
    counts = dict(waiting.values_list("status").annotate(n=Count("id")))
    by_status = GaugeMetricFamily(
        "importbeat_notifications_waiting",
        "Notifications not delivered yet: pending, held for the owner's next e-mail, retrying.",
        labels=["status"],
    )
    for status in WAITING_DELIVERIES:
        by_status.add_metric([status], counts.get(status, 0))
    oldest = GaugeMetricFamily(
        "importbeat_notifications_oldest_waiting_timestamp_seconds",
        "When the oldest notification not delivered yet was made (Unix time; absent when none).",
    )
    if since := waiting.aggregate(since=Min("created_at"))["since"]:
        oldest.add_metric([], since.timestamp())
    return [by_status, oldest, failed_notification_gauge()]


def failed_notification_gauge() -> Metric:
    """The notifications failed for good lately, by channel: a mail server that refuses every
    e-mail fails each at once, and the waiting ones above never show it (notifications hunt).
    The window is health's (STALE_QUEUED_SECONDS; notifications.recent_outcomes)."""
    window = settings.STALE_QUEUED_SECONDS
    outcomes = notifications.recent_outcomes(database_clock.now() - timedelta(seconds=window))
    failed = GaugeMetricFamily(
        "importbeat_notifications_failed_recently",
        f"Notifications made in the last {window} s (STALE_QUEUED_SECONDS) that failed for good,"
        " by channel.",
        labels=["channel"],
    )
    for channel, count in outcomes.failed.items():
        failed.add_metric([channel], count)
    return failed


def parked_notification_gauges() -> list[Metric]:
    """The notifications parked behind a turn (tasks.turns): the mail relay's lines up when it
    takes e-mails slower than they come, an owner's behind a slow callback. None while Redis
    does not tell."""
    try:
        by_turn = parked_by_turn()
    except RedisError:
        return []
    parked = GaugeMetricFamily(
        "importbeat_notifications_parked",
        "Notifications waiting their turn: behind the mail relay's EMAIL_CONCURRENCY e-mails "
        "(turn=mail), or behind another webhook of their owner (turn=owner).",
        labels=["turn"],
    )
    for turn, count in by_turn.items():
        parked.add_metric([turn], count)
    return [parked]


def processed_retention_gauges() -> list[Metric]:
    """The last retention job's figures of drop folders' processed files (also behind
    `/health`'s `processed_files`). None before the first job, or while Redis does not answer."""
    try:
        figures = health.processed_retention_figures()
    except RedisError:
        return []
    if not figures:
        return []
    gauges = []
    for name, what in (
        ("processed_files_not_deleted", "Processed drop-folder files the last retention job "
         "could not delete (permissions: see the worker's log)."),
        ("processed_folders_skipped", "processed/ entries the last retention job left alone "
         "(a link, or a file instead of a folder)."),
    ):  # fmt: skip
        gauge = GaugeMetricFamily(f"importbeat_{name}", what)
        gauge.add_metric([], figures.get(name, 0))
        gauges.append(gauge)
    return gauges


# --- the view -------------------------------------------------------------------------------


def credentials() -> list[tuple[str, str]]:
    """FLOWER_BASIC_AUTH as Flower reads it: `user:password`, several separated by commas."""
    pairs = []
    for item in settings.FLOWER_BASIC_AUTH.split(","):
        user, sep, password = item.strip().partition(":")
        if sep:
            pairs.append((user, password))
    return pairs


def given_credentials(request: HttpRequest) -> tuple[str, str] | None:
    """The user and password of the request's basic auth; None when it sends none (or none
    that can be read): a browser asks first without, and that is no guess."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def authorized(given: tuple[str, str], allowed: list[tuple[str, str]]) -> bool:
    user, password = given
    # Compare with every pair, in constant time, so the answer's timing tells nothing.
    matches = [
        hmac.compare_digest(user.encode(), u.encode())
        & hmac.compare_digest(password.encode(), p.encode())
        for u, p in allowed
    ]
    return any(matches)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition; the same credentials as Flower's (open only in development when
    none are set, like Flower)."""
    allowed = credentials()
    if not allowed and not settings.DEBUG:
        return HttpResponse(
            "Metrics are off: set FLOWER_BASIC_AUTH (user:password), the credentials they share "
            "with Flower.\n",
            status=403,
            content_type="text/plain",
        )
    if allowed:
        given = given_credentials(request)
        # Guesses are counted per address and per name (metrics_guesses, apart from logins),
        # and while locked out the right password gets 429 too: every wrong one got 401, for
        # ever, and the password found is Flower's (attack hunt). A success resets no count.
        if given is not None and metrics_guesses.locked_out(request, given[0]):
            return lockout_response(request)
        if given is None or not authorized(given, allowed):
            if given is not None and metrics_guesses.guessed_wrong(request, given[0]):
                return lockout_response(request)
            response = HttpResponse(
                "Sign in with Flower's credentials.\n", status=401, content_type="text/plain"
            )
            response["WWW-Authenticate"] = 'Basic realm="importbeat metrics"'
            return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ImportbeatCollector())
    exposition = generate_latest(registry) + metrics_per_import.text().encode()
    return HttpResponse(exposition, content_type=CONTENT_TYPE_LATEST)
