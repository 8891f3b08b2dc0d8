"""Benchmark: one retention pass (`maintenance.delete_old_runs`) over a year of 1,000,000 runs.

A realistic year, in SQL: `BENCH_RETENTION_IMPORTS` imports (10,000) of `BENCH_RETENTION_OWNERS`
owners (500), `BENCH_RETENTION_RUNS` finished runs (1,000,000) over the last 365 days
(tests/bench/bench_reads's mix of statuses), and on top of it what the retention rule keeps:

- `STREAKS` (300) imports with a failure streak still under way that began 120 days ago: every
  run of theirs since then failed, and the third one alerted (`error_details.alerted`), older
  than FAILED_RUN_RETENTION_DAYS: it must stay;
- failure streaks that ended: 1 in 100 of the other failed runs alerted, a good run after it;
- every failed run with the per-attempt failures a run keeps in `error_details`;
- an e-mail delivery per failed run, and `LATE` (200) imports late for 60 days, their `late`
  notice kept, beside as many `late` notices of streaks that ended.

Then, each with the statements' plans (EXPLAIN ANALYZE of the first batch's selections, built by
the real pass: `_delete_in_batches` is wrapped, not copied) and the time of every statement of
the pass (the id selections batch by batch, and the deletions):

1. the daily pass of a deployment keeping a year (RUN_RETENTION_DAYS 363, FAILED_... 364:
   two ages, as at the defaults): one day of runs to delete among 1,000,000;
2. before it and before 3., the same first selection without the rule that keeps the alerting
   run (a reference query, not the product's): what the rule costs;
3. the first pass at the defaults (30 / 90 days): about 900,000 runs to delete in one pass;
4. the next day's pass at the defaults.

Timings are printed, never asserted.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from collections import defaultdict, deque
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Q
from django.test.utils import CaptureQueriesContext

from common import database_clock
from schedules import services
from schedules.models import Dataset, ImportRun, NotificationDelivery, ScheduledImport
from tasks import maintenance
from tests.bench import bench_reads
from tests.bench.figures import percentile, report

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(3600)]

IMPORTS = int(os.environ.get("BENCH_RETENTION_IMPORTS", "10000"))
OWNERS = int(os.environ.get("BENCH_RETENTION_OWNERS", "500"))
RUNS = int(os.environ.get("BENCH_RETENTION_RUNS", "1000000"))
STREAKS = 300
LATE = 200
RUNS_TABLE = ImportRun._meta.db_table
IMPORTS_TABLE = ScheduledImport._meta.db_table
DELIVERIES_TABLE = NotificationDelivery._meta.db_table


def owners_and_imports(owners: int = OWNERS, imports: int = IMPORTS) -> list[int]:
    """`owners` users with a dataset each and `imports` hourly imports shared round-robin among
    them (no beat entries); the imports' ids."""
    User = get_user_model()
    users = User.objects.bulk_create(
        [User(username=f"owner{n:04d}", email=f"owner{n:04d}@example.com") for n in range(owners)]
    )
    datasets = Dataset.objects.bulk_create([Dataset(owner=user, name="feeds") for user in users])
    created = ScheduledImport.objects.bulk_create(
        [
            ScheduledImport(
                owner=users[n % owners], name=f"feed {n:05d}", dataset=datasets[n % owners],
                key_column="sku", source_url=f"https://feeds.example.com/{n}.csv",
                schedule_type="interval", interval_seconds=3600, webhook_secret="0" * 64,
            )
            for n in range(imports)
        ],
        batch_size=2000,
    )  # fmt: skip
    return [imp.pk for imp in created]


ATTEMPTS = json.dumps(
    {
        "attempts": [
            {"attempt": n, "error": "The source answered HTTP 503 (service unavailable).",
             "at": "2026-01-01T00:00:00+00:00"}
            for n in range(1, 5)
        ]
    }
)  # fmt: skip


def a_year_with_streaks() -> None:
    """The runs, the streaks, the deliveries and the late imports described above."""
    bench_reads.add_runs(1, RUNS, total=RUNS)
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {RUNS_TABLE} DISABLE TRIGGER USER")
        try:
            # Every failed run keeps its attempts' failures; 1 in 100 of them alerted (a streak
            # that ended: a good run of its import came after it).
            cursor.execute(
                f"UPDATE {RUNS_TABLE} SET error_details = %s::jsonb || CASE WHEN id %% 100 = 7"
                " THEN '{\"alerted\": true, \"streak\": 3}'::jsonb ELSE '{}'::jsonb END"
                " WHERE status IN ('failed', 'timed_out')",
                [ATTEMPTS],
            )
            # STREAKS imports failing since 120 days ago; the third failure alerted.
            cursor.execute(
                f"UPDATE {RUNS_TABLE} r SET status = 'failed', error_details = %s::jsonb,"
                " error_message = 'The source answered HTTP 503 (service unavailable) on every"
                " attempt.' FROM (SELECT id FROM {imports} ORDER BY id LIMIT %s) AS i"
                " WHERE r.scheduled_import_id = i.id"
                " AND r.queued_at > now() - interval '120 days'".format(imports=IMPORTS_TABLE),
                [ATTEMPTS, STREAKS],
            )
            cursor.execute(
                f"UPDATE {RUNS_TABLE} r SET error_details = r.error_details"
                ' || \'{"alerted": true, "streak": 3}\'::jsonb FROM ('
                f"  SELECT id, row_number() OVER (PARTITION BY scheduled_import_id"
                f"  ORDER BY queued_at) AS n FROM {RUNS_TABLE}"
                f"  WHERE scheduled_import_id IN (SELECT id FROM {IMPORTS_TABLE} ORDER BY id"
                "   LIMIT %s) AND queued_at > now() - interval '120 days'"
                ") AS s WHERE r.id = s.id AND s.n = 3",
                [STREAKS],
            )
        finally:
            cursor.execute(f"ALTER TABLE {RUNS_TABLE} ENABLE TRIGGER USER")
        cursor.execute(bench_reads.COUNTERS_SQL.format(table=RUNS_TABLE))
        cursor.execute(
            f"UPDATE {IMPORTS_TABLE} i SET consecutive_failures = s.n FROM ("
            f" SELECT scheduled_import_id AS id, count(*) AS n FROM {RUNS_TABLE}"
            f" WHERE scheduled_import_id IN (SELECT id FROM {IMPORTS_TABLE} ORDER BY id LIMIT %s)"
            " AND queued_at > now() - interval '120 days' GROUP BY scheduled_import_id"
            ") AS s WHERE i.id = s.id",
            [STREAKS],
        )
        # An e-mail per failed run, delivered as it finished.
        cursor.execute(
            f"INSERT INTO {DELIVERIES_TABLE} (scheduled_import_id, run_id, event, channel,"
            " target, status, attempts, error, created_at, finished_at)"
            " SELECT scheduled_import_id, id, 'failed', 'email', '', 'delivered', 1, '',"
            f" finished_at, finished_at FROM {RUNS_TABLE} WHERE status IN ('failed', 'timed_out')"
        )
        # LATE imports late for 60 days (their notice kept), and as many notices of late
        # streaks that ended (to go).
        cursor.execute(
            f"UPDATE {IMPORTS_TABLE} SET late_since = now() - interval '60 days',"
            " missed_while_late = 1440 WHERE id IN ("
            f" SELECT id FROM {IMPORTS_TABLE} ORDER BY id DESC LIMIT %s)",
            [LATE],
        )
        cursor.execute(
            f"INSERT INTO {DELIVERIES_TABLE} (scheduled_import_id, event, channel, target,"
            " status, attempts, error, created_at, finished_at)"
            " SELECT id, 'late', 'email', '', 'delivered', 1, '', at, at FROM ("
            f" SELECT id, now() - interval '60 days' AS at FROM {IMPORTS_TABLE}"
            " WHERE late_since IS NOT NULL"
            f" UNION ALL SELECT id, now() - interval '200 days' FROM {IMPORTS_TABLE}"
            " WHERE late_since IS NULL ORDER BY 1 LIMIT %s) AS l",
            [2 * LATE],
        )
    bench_reads.vacuum()
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {DELIVERIES_TABLE}")


def explain(sql: str, params: list | tuple = ()) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        return "\n".join("      " + row[0] for row in cursor.fetchall())


class FirstBatchesExplained:
    """While it is entered, each selection's first batch, as the real pass builds it, has its
    plan printed (`_delete_in_batches` wrapped, not copied)."""

    def __enter__(self) -> None:
        self.real = real = maintenance._delete_in_batches

        def explained(queryset):
            ids = queryset.values_list("pk", flat=True)[: maintenance.DELETE_BATCH]
            sql, params = ids.query.sql_with_params()
            print(f"\n    plan of the first batch's selection of {queryset.model.__name__}:")
            print(explain(sql, params), flush=True)
            if queryset.model is ImportRun and (batch := list(ids)):
                explain_deletion(batch)
            return real(queryset)

        maintenance._delete_in_batches = explained

    def __exit__(self, *exc) -> None:
        maintenance._delete_in_batches = self.real


def explain_deletion(ids: list[int]) -> None:
    """The plans of services.delete_runs's statements for the batch `ids`, rolled back."""
    selected, params = (
        ImportRun.objects.filter(pk__in=ids).order_by().values("pk").query.sql_with_params()
    )
    with transaction.atomic():
        for statement in services.runs_deletion():
            used = statement.count(services.SELECTED_RUNS)
            sql = statement.replace(services.SELECTED_RUNS, selected)
            plan = explain(sql, list(params) * used).splitlines()
            # The statement's head, the plan's first lines and its time: not 5,000 ids.
            print(f"    deletion statement: {statement.split(services.SELECTED_RUNS)[0][:90]}")
            print("\n".join(line[:200] for line in plan[:12] + plan[-2:]))
        transaction.set_rollback(True)


def kind(sql: str) -> str:
    """A statement's shape, for the per-statement times: its verb, its table, what it sets."""
    verb = sql.split(None, 1)[0]
    table = re.search(r'(?:FROM|UPDATE|INTO)\s+"?(\w+)"?', sql)
    sets = re.search(r"\bSET\s+\"?(\w+)", sql) if verb == "UPDATE" else None
    return " ".join(filter(None, [verb, table and table[1], sets and f"SET {sets[1]}"]))


def timed_pass(name: str, settings, days: int, failed_days: int) -> dict:
    settings.RUN_RETENTION_DAYS = days
    settings.FAILED_RUN_RETENTION_DAYS = failed_days
    runs_before = ImportRun.objects.count()
    # Django keeps the last 9,000 statements only: a longer pass would read as none.
    connection.queries_log = deque(maxlen=1_000_000)
    with CaptureQueriesContext(connection) as queries, FirstBatchesExplained():
        started = time.monotonic()
        deleted = maintenance.delete_old_runs()
        took = time.monotonic() - started
    # The plans' own statements ran the selections once more: not the pass's time.
    took -= sum(
        float(q["time"]) for q in queries.captured_queries if q["sql"].startswith("EXPLAIN")
    )
    by_kind: dict[str, list[float]] = defaultdict(list)
    for query in queries.captured_queries:
        by_kind[kind(query["sql"])].append(float(query["time"]))
    report(name, runs_before=runs_before, seconds=round(took, 1), statements=len(queries),
           **deleted)  # fmt: skip
    for what, times in sorted(by_kind.items(), key=lambda item: -sum(item[1])):
        print(f"    {what:45s} x{len(times):4d}: total {sum(times):7.2f} s, first"
              f" {times[0]:.3f}, median {statistics.median(times):.3f}, p95"
              f" {percentile(times, 0.95):.3f}, last {times[-1]:.3f}")  # fmt: skip
    selections = [
        float(q["time"]) for q in queries.captured_queries
        if q["sql"].startswith(f'SELECT "{RUNS_TABLE}"."id" AS "pk" FROM')
    ]  # fmt: skip
    if len(selections) > 10:
        tenth = len(selections) // 10
        print("    the runs' id selections, each tenth of the pass (mean s): "
              + ", ".join(f"{statistics.mean(selections[i : i + tenth]):.3f}"
                          for i in range(0, tenth * 10, tenth)))  # fmt: skip
    return deleted


def kept_alerting_runs() -> tuple[int, int]:
    """(alerted runs of a streak under way, still there; alerted runs in all)."""
    under_way = ImportRun.objects.filter(
        error_details__has_key="alerted",
        scheduled_import__consecutive_failures__gt=0,
        scheduled_import__in=ScheduledImport.objects.order_by("pk")[:STREAKS],
    ).count()
    return under_way, ImportRun.objects.filter(error_details__has_key="alerted").count()


def reference_without_the_rule(days: int, failed_days: int) -> None:
    """The same selection of the first batch without `exclude(streak_alerted)`: the rule's
    cost (a reference query, written here, not the product's)."""
    now = database_clock.now()
    failed = [ImportRun.Status.FAILED, ImportRun.Status.TIMED_OUT]
    runs = ImportRun.objects.exclude(status__in=ImportRun.ACTIVE_STATUSES).filter(
        (Q(queued_at__lt=now - timedelta(days=days)) & ~Q(status__in=failed))
        | Q(queued_at__lt=now - timedelta(days=failed_days), status__in=failed)
    )
    sql, params = runs.values_list("pk", flat=True)[
        : maintenance.DELETE_BATCH
    ].query.sql_with_params()
    print("\n    reference: the first batch's selection without the rule:")
    print(explain(sql, params), flush=True)


def bench_retention_over_a_year_of_a_million_runs(settings):
    started = time.monotonic()
    owners_and_imports()
    a_year_with_streaks()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_size_pretty(pg_total_relation_size('{RUNS_TABLE}'))")
        size = cursor.fetchone()[0]
    under_way, alerted = kept_alerting_runs()
    report("built", imports=IMPORTS, owners=OWNERS, runs=ImportRun.objects.count(),
           run_table=size.replace(" ", ""), deliveries=NotificationDelivery.objects.count(),
           alerted_runs=alerted, alerting_runs_of_streaks_under_way=under_way,
           seconds=round(time.monotonic() - started))  # fmt: skip

    # 1. A deployment keeping a year, its failed runs a day longer: the day's pass (the two
    # ages differ, as at the defaults); before it, what the rule costs: the same first
    # selection without it (2).
    reference_without_the_rule(363, 364)
    timed_pass("daily pass keeping a year (363/364 days)", settings, 363, 364)
    # 3. The first pass at the defaults: most of the year goes (the reference first again).
    reference_without_the_rule(30, 90)
    timed_pass("first pass at the defaults (30/90 days)", settings, 30, 90)
    under_way_after, alerted_after = kept_alerting_runs()
    report("kept", alerting_runs_of_streaks_under_way=f"{under_way_after}/{under_way}",
           alerted_runs=alerted_after, runs_left=ImportRun.objects.count())  # fmt: skip
    bench_reads.vacuum()
    # 4. The next day's pass at the defaults (as if a day went by: one day less kept).
    timed_pass("next day's pass at the defaults (29/89 days)", settings, 29, 89)
