"""Benchmark: `run_import` of a 1,000,000-row product CSV against `psql \\copy` of the same file.

Run with `make bench`. Prints its figures; asserts only that the imports succeeded (timings
depend on the machine). Targets (issue 3): first load within 3x of \\copy, an unchanged re-load
within 2x, the import process's peak RSS under 250 MB.

The unchanged re-load is recognised by the file's digest and stages nothing; a third run, of
the file with one row changed, shows what a re-load costs when it goes through the merge.

Last, the floor of any first load that keeps each row as a JSONB record (SPEC section 3): the
rows `\\copy` loaded are written once more as records, by the importer's own first-load INSERT,
into a copy of the records table without its indexes. No start-up, download, staging, check or
index is in that figure, only the content hash every record needs; `\\copy` plus it is what a
first load cannot go below.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from schedules.models import ImportRun, Record
from tests.conftest import BASE_DIR, test_database_url
from tests.factories import make_import

ROWS = 1_000_000
BENCH_DIR = BASE_DIR / ".run" / "bench"
# The version in the name changes whenever the generator does, so a cached file is never stale.
CSV_PATH = BENCH_DIR / f"products-{ROWS}-v1.csv"
PGSERVER_PSQL = BASE_DIR / ".venv/lib/python3.11/site-packages/pgserver/pginstall/bin/psql"
COLUMNS = ("sku", "name", "category", "price", "quantity", "active", "updated_at")


def write_products_csv(path: Path, rows: int = ROWS, seed: int = 42) -> None:
    """A deterministic product file: ~65 bytes a row, some quoted fields with commas."""
    rng = random.Random(seed)
    categories = ["Tools", "Garden", "Kitchen", "Toys", "Office", '"Outdoor, Camping"', "Bath"]
    adjectives = ["Red", "Large", "Compact", "Steel", "Wooden", "Deluxe", "Mini"]
    nouns = ["Anvil", "Bucket", "Crate", "Drill", "Easel", "Funnel", "Grater"]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as out:
        out.write(",".join(COLUMNS) + "\n")
        for i in range(rows):
            out.write(
                f"SKU-{i:07d},{rng.choice(adjectives)} {rng.choice(nouns)} {i % 977},"
                f"{rng.choice(categories)},{rng.randint(100, 99999) / 100:.2f},"
                f"{rng.randint(0, 5000)},{'true' if i % 3 else 'false'},"
                f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}\n"
            )
    tmp.rename(path)


def libpq_args() -> list[str]:
    """psql's connection arguments for the suite's database (socket or TCP URL)."""
    parts = urllib.parse.urlsplit(test_database_url())
    path = urllib.parse.unquote(parts.path)
    host = parts.hostname or path.rsplit("/", 1)[0]
    args = ["-h", host, "-d", path.rsplit("/", 1)[1], "-U", parts.username or "postgres"]
    if parts.port:
        args += ["-p", str(parts.port)]
    return args


def psql_binary() -> str:
    return str(PGSERVER_PSQL) if PGSERVER_PSQL.exists() else (shutil.which("psql") or "psql")


def timed(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Run `command` in the foreground: (seconds, peak RSS in KiB, output).

    The peak is sampled with psutil every 20 ms: `ru_maxrss` of a child forked from this
    pytest process would count the parent's pages the child held before exec (this process
    holds the 65 MB file it serves).
    """
    import psutil

    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    watched = psutil.Process(process.pid)
    peak = 0
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(process.stdout.read()))
    reader.start()
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    process.wait()
    reader.join()
    seconds = time.perf_counter() - started
    output = b"".join(chunks).decode(errors="replace")
    assert process.returncode == 0, output
    return seconds, peak // 1024, output


@pytest.mark.django_db(transaction=True)
def bench_run_import_against_psql_copy(alice, csv_server):
    # Given a 1M-row product CSV served over local HTTP
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    if not CSV_PATH.exists():
        write_products_csv(CSV_PATH)
    body = CSV_PATH.read_bytes()
    imp = make_import(alice, csv_server.serve("/products.csv", body))
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "ALLOWED_PRIVATE_HOSTS": "127.0.0.1:*",
        "DJANGO_DEBUG": "1",
        # The importer logs each step's time at DEBUG; the figures below quote them.
        "LOG_LEVEL": "DEBUG",
    }
    command = [sys.executable, "manage.py", "run_import", str(imp.pk), "--no-progress"]

    # When psql \copy loads it into a plain text table, and run_import loads it twice
    psql = [psql_binary(), *libpq_args(), "-v", "ON_ERROR_STOP=1", "-q", "-c"]
    table = "bench_copy_target"
    columns = ", ".join(f"{name} text" for name in COLUMNS)
    subprocess.run([*psql, f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} ({columns})"],
                   check=True, env=env)  # fmt: skip
    copy_s, _, _ = timed(
        [*psql, f"\\copy {table} from '{CSV_PATH}' with (format csv, header true)"], env
    )
    first_s, first_rss, first_out = timed(command, env)
    reload_s, reload_rss, reload_out = timed(command, env)
    csv_server.serve("/products.csv", body.replace(b"SKU-0500000,", b"SKU-0500000,Changed ", 1))
    changed_s, changed_rss, changed_out = timed(command, env)
    floor_s, _, _ = timed([*psql, write_records_alone(table)], env)
    subprocess.run([*psql, f"DROP TABLE {table}, {FLOOR_TABLE}"], check=True, env=env)

    # Then both runs succeeded, and the figures are printed
    first, reload, changed = ImportRun.objects.filter(scheduled_import=imp).order_by("id")
    assert (first.status, first.rows_inserted) == ("succeeded", ROWS), first_out
    assert (reload.status, reload.rows_unchanged) == ("succeeded", ROWS), reload_out
    assert (changed.rows_updated, changed.rows_unchanged) == (1, ROWS - 1), changed_out
    assert Record.objects.filter(dataset=imp.dataset).count() == ROWS
    size_mb = len(body) / 1e6
    peak_mb = max(first_rss, reload_rss, changed_rss) / 1024
    print(
        f"\n\nimport benchmark: {ROWS:,} rows, {size_mb:.1f} MB over local HTTP\n"
        f"  psql \\copy into a text table   {copy_s:6.2f} s\n"
        f"  run_import, first load          {first_s:6.2f} s  ratio {first_s / copy_s:4.2f}x"
        f"  (target 3x; the run itself {first.duration_ms / 1000:.2f} s)\n"
        f"  run_import, unchanged re-load   {reload_s:6.2f} s  ratio {reload_s / copy_s:4.2f}x"
        f"  (target 2x; the run itself {reload.duration_ms / 1000:.2f} s)\n"
        f"  run_import, one row changed     {changed_s:6.2f} s  ratio {changed_s / copy_s:4.2f}x"
        f"  (the whole merge; the run itself {changed.duration_ms / 1000:.2f} s)\n"
        f"  writing the records alone       {floor_s:6.2f} s  ratio {floor_s / copy_s:4.2f}x"
        f"  (no index, no staging, no start-up: \\copy plus it is"
        f" {(copy_s + floor_s) / copy_s:.2f}x, the floor of a first load)\n"
        f"  peak RSS of run_import          {peak_mb:6.1f} MB  (first {first_rss / 1024:.1f},"
        f" re-load {reload_rss / 1024:.1f}, changed {changed_rss / 1024:.1f}; target 250 MB)\n"
        f"  steps, first load:  {steps(first_out)}\n"
        f"  steps, re-load:     {steps(reload_out)}\n"
        f"  steps, one changed: {steps(changed_out)}\n"
    )


FLOOR_TABLE = "bench_records_floor"


def write_records_alone(copied: str) -> str:
    """SQL that writes the `\\copy`-loaded rows as records, by the importer's own first-load INSERT.

    A view in place of the staging table gives that statement the rows with their key and
    hash; the records go into a copy of `schedules_record` without its indexes.
    """
    from psycopg import sql

    from tasks.engine.first_record import Layout
    from tasks.engine.merge import insert_new
    from tasks.engine.tables import RAW

    layout = Layout(names=list(COLUMNS), key_index=0, key_column=COLUMNS[0])
    fields = [sql.Identifier(name) for name in COLUMNS]
    staged = sql.SQL(
        "CREATE TEMP VIEW {raw} AS SELECT {columns}, NULL::text AS problem, {key} AS key,"
        " hashtextextended(concat_ws(chr(31), {fields}), 0) AS content_hash FROM {copied}"
    ).format(
        raw=sql.Identifier(RAW),
        columns=sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(field, layout.col(i)) for i, field in enumerate(fields)
        ),
        key=fields[0],
        fields=sql.SQL(", ").join(fields),
        copied=sql.Identifier(copied),
    )
    table = sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING IDENTITY)").format(
        sql.Identifier(FLOOR_TABLE), sql.Identifier(Record._meta.db_table)
    )
    insert = insert_new(layout, FLOOR_TABLE, 1, 1, first_load=True, any_failed=False)
    return sql.SQL("; ").join([staged, table, insert]).as_string(None)


def steps(output: str) -> str:
    """The importer's "<step> took <n>s" log lines, condensed."""
    found = re.findall(r"run \d+: (.+?) took ([\d.]+)s", output)
    return ", ".join(f"{name} {float(seconds):.2f}s" for name, seconds in found)
