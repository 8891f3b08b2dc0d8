"""`/metrics`' families with a series per import are written as text from values
(schedules.metrics_per_import): the same text as prometheus_client wrote from model instances,
which at 10,000 imports took longer than Prometheus's scrape timeout (tests/bench/bench_metrics.py
measures it)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.models.signals import post_init
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from schedules import metrics_per_import, services
from schedules.models import RunTally, ScheduledImport
from schedules.stats import TIMED_STATUSES
from tests.factories import make_import

pytestmark = pytest.mark.django_db

ROW_KINDS = ("read", "inserted", "updated", "unchanged", "deleted", "failed")


class OldCollector:
    """The per-import families as schedules.metrics collected them before, kept to compare."""

    def collect(self) -> Iterator:
        labels = ["import_id", "import", "owner"]
        runs = CounterMetricFamily(
            "importbeat_runs", "Runs that ended, by import and final status.",
            labels=[*labels, "status"],
        )  # fmt: skip
        rows = CounterMetricFamily(
            "importbeat_rows", "Rows of the runs that ended, by import and kind.",
            labels=[*labels, "kind"],
        )  # fmt: skip
        durations = HistogramMetricFamily(
            "importbeat_run_duration_seconds", "Duration of the runs that ended, by import.",
            labels=labels,
        )  # fmt: skip
        per_import = defaultdict(
            lambda: {"rows": dict.fromkeys(ROW_KINDS, 0), "count": 0, "sum_ms": 0, "buckets": []}
        )
        tallies = RunTally.objects.select_related("scheduled_import__owner").order_by(
            "scheduled_import_id", "status"
        )
        imports = {}
        for tally in tallies:
            imp = imports.setdefault(tally.scheduled_import_id, tally.scheduled_import)
            runs.add_metric([*label_values(imp), tally.status], tally.runs)
            sums = per_import[imp.pk]
            for kind in ROW_KINDS:
                sums["rows"][kind] += getattr(tally, f"rows_{kind}")
            if tally.status in TIMED_STATUSES:  # (a skipped run took no time)
                sums["sum_ms"] += tally.duration_ms_sum
                sums["buckets"] = add(sums["buckets"], tally.duration_buckets)
        for import_id, sums in per_import.items():
            values = label_values(imports[import_id])
            for kind, value in sums["rows"].items():
                rows.add_metric([*values, kind], value)
            durations.add_metric(
                values, buckets=cumulative(sums["buckets"]), sum_value=sums["sum_ms"] / 1000
            )
        failing = GaugeMetricFamily(
            "importbeat_import_consecutive_failures",
            "Failed or timed-out runs in a row of each import that is not cancelled.",
            labels=labels,
        )
        succeeded = GaugeMetricFamily(
            "importbeat_import_last_success_timestamp_seconds",
            "When the last succeeded run of each import that is not cancelled ended (Unix time;"
            " absent before its first).",
            labels=labels,
        )
        for imp in ScheduledImport.objects.exclude(
            status=ScheduledImport.Status.CANCELLED
        ).select_related("owner"):
            failing.add_metric(label_values(imp), imp.consecutive_failures)
            if imp.last_success_at is not None:
                succeeded.add_metric(label_values(imp), imp.last_success_at.timestamp())
        yield from (runs, rows, durations, failing, succeeded)


def label_values(imp: ScheduledImport) -> list[str]:
    return [str(imp.pk), imp.name, imp.owner.get_username()]


def add(left: list[int], right: list[int]) -> list[int]:
    return list(right) if not left else [a + b for a, b in zip(left, right, strict=True)]


def cumulative(buckets: list[int]) -> list[tuple[str, float]]:
    bounds = [str(ms / 1000) for ms in RunTally.DURATION_BOUNDS_MS] + ["+Inf"]
    total, out = 0, []
    for bound, count in zip(bounds, buckets or [0] * len(bounds), strict=True):
        total += count
        out.append((bound, total))
    return out


def old_text() -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OldCollector())
    return generate_latest(registry).decode()


def families(text: str) -> list[str]:
    """The exposition's families, each whole (order between families means nothing)."""
    return sorted("# HELP " + block for block in text.split("# HELP ") if block)


@pytest.fixture
def tallied(alice, bob):
    # Names that need escaping, an import with no run, one cancelled, one with big figures
    plain = make_import(alice, "https://example.com/a.csv", name="nightly feed", dataset="a")
    odd = make_import(bob, "https://example.com/b.csv", name="odd", dataset="b")
    make_import(alice, "https://example.com/c.csv", name="never ran", dataset="c")
    gone = make_import(bob, "https://example.com/d.csv", name="cancelled", dataset="d")
    services.cancel_import(gone)
    # (a line break as an import saved before names were checked could hold)
    ScheduledImport.objects.filter(pk=odd.pk).update(
        name='the "best" \\ feed\nline 2 ✓', consecutive_failures=4
    )
    succeeded_at = datetime(2026, 12, 1, 2, 0, 7, 250000, tzinfo=UTC)
    ScheduledImport.objects.filter(pk__in=[plain.pk, gone.pk]).update(last_success_at=succeeded_at)
    buckets = "ARRAY[1,2,3,4,5,6,7,8,9,10,11]::bigint[]"
    with connection.cursor() as cursor:
        for imp, status, runs, rows in [
            (plain, "succeeded", 120, 1_000_000),
            (plain, "failed", 3, 0),
            (plain, "partial", 1, 123_456_789_012),
            (odd, "timed_out", 2, 7),
            (gone, "succeeded", 5, 50),
            (plain, "skipped", 20, 0),
        ]:
            cursor.execute(
                "INSERT INTO schedules_runtally (scheduled_import_id, status, runs, rows_read,"
                " rows_inserted, rows_updated, rows_unchanged, rows_deleted, rows_failed,"
                " duration_count, duration_ms_sum, duration_buckets)"
                f" VALUES (%s, %s, %s, %s, %s, 1, 2, 3, 4, %s, %s, {buckets})",
                [imp.pk, status, runs, rows, rows // 3, runs, runs * 1234],
            )


def test_the_per_import_families_are_the_text_prometheus_client_wrote(tallied):
    new = metrics_per_import.text()

    assert families(new) == families(old_text())
    assert 'import="the \\"best\\" \\\\ feed\\nline 2 ✓"' in new
    # A feed's last success, for an alert on a feed gone quiet; none for a cancelled import
    # nor for one that never succeeded
    assert (
        'importbeat_import_last_success_timestamp_seconds{import="nightly feed",'
        f'import_id="{ScheduledImport.objects.get(name="nightly feed").pk}",owner="alice"}}'
        " 1.79609040725e+09\n"
    ) in new
    assert new.count("importbeat_import_last_success_timestamp_seconds{") == 1


def test_no_model_instance_is_made_for_an_import_or_a_tally(tallied):
    made = []

    def count(sender, **kwargs):
        made.append(sender._meta.model_name)

    post_init.connect(count)
    try:
        metrics_per_import.text()
    finally:
        post_init.disconnect(count)

    assert made == []


def test_without_imports_the_families_are_empty_but_declared(db):
    text = metrics_per_import.text()

    assert families(text) == families(old_text())
    assert "# TYPE importbeat_runs_total counter" in text


def test_skipped_runs_are_counted_but_take_no_place_among_the_durations(tallied):
    text = metrics_per_import.text()
    plain = ScheduledImport.objects.get(name="nightly feed").pk
    labels = f'import="nightly feed",import_id="{plain}",owner="alice"'

    # Each tally's buckets hold 66 runs: the succeeded, failed and partial ones are timed,
    # the skipped ones (which took no time) not
    assert f'importbeat_runs_total{{{labels},status="skipped"}} 20.0\n' in text
    assert f"importbeat_run_duration_seconds_count{{{labels}}} 198.0\n" in text
