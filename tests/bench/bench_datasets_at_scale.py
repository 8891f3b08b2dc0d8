"""Benchmark: a dataset of millions of records through the Procfile's `web`.

Builds one dataset of `BENCH_DATASET_RECORDS` records (2,000,000; five short fields each, in
SQL) and its kept count, starts gunicorn with a worker timeout of `BENCH_WEB_TIMEOUT` seconds
(10, a third of gunicorn's default, so that the export outlasts it), then times one request of
each: the datasets list, the dataset, a page of its records, a page filtered by a field, the
whole export as CSV (read to its end: the lines that arrived, whether the stream was cut, the
records a second, its first byte), the names of the export's header against the way before
the tenth round (every record's names), and the dataset's deletion.

Before this round the list and the dataset counted every record at each request, and an export
that outlasted the worker timeout was cut off (tests/test_a_long_export_is_streamed_whole.py).
Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import time

import pytest
import requests
from django.db import connection

from schedules import services
from schedules.models import Dataset
from tests.bench import bench_reads

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.timeout(1800),
]

RECORDS = int(os.environ.get("BENCH_DATASET_RECORDS", "2000000"))
WEB_TIMEOUT = int(os.environ.get("BENCH_WEB_TIMEOUT", "10"))


def make_records(dataset: Dataset, count: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO schedules_record (dataset_id, key, data, content_hash, created_at,"
            " updated_at) SELECT %s, 'sku-' || g, jsonb_build_object('sku', 'sku-' || g,"
            " 'name', 'Product number ' || g, 'price', (g %% 1000)::text || '.99',"
            " 'stock', (g %% 77)::text, 'category', 'cat-' || (g %% 40)), g, now(), now()"
            " FROM generate_series(1, %s) g",
            [dataset.pk, count],
        )
        cursor.execute("VACUUM ANALYZE schedules_record")
    services.recount_records([dataset.pk])


def print_field_name_scans(dataset: Dataset) -> None:
    """The export's header (`services.known_fields`, the names kept) against the scan of
    every record it ran before they were kept (`services.read_fields`) and against listing
    every record's names, which the tenth round replaced, on the same records, alternated
    three times."""
    every_records_names = (
        "SELECT DISTINCT jsonb_object_keys(data) FROM schedules_record WHERE dataset_id = %s"
    )
    for _ in range(3):
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute(every_records_names, [dataset.pk])
            before = sorted(name for (name,) in cursor.fetchall())
        every = time.monotonic() - started
        started = time.monotonic()
        scanned = services.read_fields(dataset.pk)
        scan = time.monotonic() - started
        started = time.monotonic()
        now = sorted(services.known_fields(dataset.pk))
        took = time.monotonic() - started
        assert now == scanned == before
        label = "the header's field names"
        print(
            f"{label:28s} {took * 1000:.1f} ms kept (the scan: {scan:.2f}s;"
            f" every record's names: {every:.2f}s)"
        )


def timed_get(url: str, headers: dict[str, str]) -> str:
    started = time.monotonic()
    response = requests.get(url, headers=headers, timeout=600)
    return f"{response.status_code} in {(time.monotonic() - started) * 1000:,.0f} ms"


def bench_a_dataset_of_millions_of_records(alice, processes) -> None:
    dataset = Dataset.objects.create(owner=alice, name="big")
    started = time.monotonic()
    make_records(dataset, RECORDS)
    print(f"\nbuilt {RECORDS:,} records in {time.monotonic() - started:.1f}s")
    base = (
        bench_reads.start_web(processes, GUNICORN_CMD_ARGS=f"--timeout {WEB_TIMEOUT}") + "/api/v1"
    )
    headers = {"Authorization": f"Token {bench_reads.token_for(alice)}"}

    print(f"=== one dataset of {RECORDS:,} records, gunicorn --timeout {WEB_TIMEOUT}")
    for name, path in (
        ("GET /datasets/", "/datasets/"),
        ("GET /datasets/big/", "/datasets/big/"),
        ("a page of 100 records", "/datasets/big/records/?page_size=100"),
        ("a page filtered by a field", "/datasets/big/records/?page_size=100&field=stock:3"),
    ):
        print(f"{name:28s} {timed_get(base + path, headers)}")

    started, first_byte, lines, cut = time.monotonic(), None, 0, ""
    try:
        with requests.get(f"{base}/datasets/big/export", headers=headers, stream=True) as answer:
            for chunk in answer.iter_content(1 << 16):
                first_byte = first_byte or time.monotonic() - started
                lines += chunk.count(b"\n")
    except requests.RequestException as error:
        cut = f", CUT OFF ({type(error).__name__})"
    took = time.monotonic() - started
    print(
        f"{'the export':28s} {lines - 1:,} of {RECORDS:,} records in {took:.1f}s"
        f" ({(lines - 1) / took:,.0f} a second, first byte after {first_byte or 0:.1f}s){cut}"
    )
    print_field_name_scans(dataset)
    started = time.monotonic()
    deleted = requests.delete(f"{base}/datasets/big/", headers=headers, timeout=600)
    took = time.monotonic() - started
    print(f"{'DELETE /datasets/big/':28s} {deleted.status_code} in {took:.1f}s")
    timeouts = processes.logs().count("WORKER TIMEOUT")
    print(f"workers killed by the timeout: {timeouts}")
