"""Benchmark: the first byte of a wide dataset's export through the Procfile's `web`.

Builds one dataset of `BENCH_WIDE_RECORDS` records (500,000) of 60 text fields each (about
2.5 KB of JSON a record, which PostgreSQL stores compressed), in SQL, its names unknown as
migration 0044 leaves a dataset that was there. Then times, on the same records:

- the scan of every record for the header's names, as the export ran it before the names were
  kept (twice an export: before the response started and again in its stream);
- the first export, its names unknown: read by that scan once, and kept;
- the next export, its names kept (`Dataset.fields`): its first byte.

gunicorn runs with its default timeout (30 s, so a statement limit of 29 s): at 24 µs a
record the scan outlasts it from about 1.2 million such records, and the export answered 503
every time. Timings are printed, never asserted.
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

RECORDS = int(os.environ.get("BENCH_WIDE_RECORDS", "500000"))
FIELDS = 60
NAMES = [f"field_{number:02d}" for number in range(FIELDS)]


def make_wide_records(dataset: Dataset, count: int) -> None:
    """`count` records of FIELDS text fields, about 25 characters each, keyed by field_00."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO schedules_record (dataset_id, key, data, content_hash, created_at,"
            " updated_at) SELECT %s, 'k-' || g, jsonb_object(%s::text[], ARRAY(SELECT"
            "  CASE WHEN i = 0 THEN 'k-' || g"
            "  ELSE 'v' || i || '-' || g || '-' || left(md5((g * 61 + i)::text), 12)"
            "  END FROM generate_series(0, %s) i)), g, now(), now()"
            " FROM generate_series(1, %s) g",
            [dataset.pk, NAMES, FIELDS - 1, count],
        )
        cursor.execute("VACUUM ANALYZE schedules_record")
        cursor.execute(
            "SELECT avg(octet_length(data::text))::int, avg(pg_column_size(data))::int"
            " FROM (SELECT data FROM schedules_record WHERE dataset_id = %s LIMIT 1000) r",
            [dataset.pk],
        )
        text_bytes, stored_bytes = cursor.fetchone()
    # Counted and keyed as a merge leaves them; its names unknown (NULL), as after 0044.
    Dataset.objects.filter(pk=dataset.pk).update(
        record_count=count, key_column=NAMES[0], fields=None
    )
    print(f"a record: {text_bytes:,} bytes of JSON, {stored_bytes:,} bytes stored")


def first_byte(url: str, headers: dict[str, str]) -> str:
    """The export's status and the time to its first byte; the rest is not read."""
    started = time.monotonic()
    with requests.get(url, headers=headers, stream=True, timeout=600) as answer:
        next(answer.iter_content(1 << 16), b"")
        took = time.monotonic() - started
        return f"{answer.status_code}, first byte after {took:.2f}s"


def bench_the_first_byte_of_a_wide_datasets_export(alice, processes) -> None:
    dataset = Dataset.objects.create(owner=alice, name="wide")
    started = time.monotonic()
    make_wide_records(dataset, RECORDS)
    print(f"built {RECORDS:,} records of {FIELDS} fields in {time.monotonic() - started:.1f}s")
    base = bench_reads.start_web(processes) + "/api/v1"
    headers = {"Authorization": f"Token {bench_reads.token_for(alice)}"}
    export = f"{base}/datasets/wide/export"

    print(f"=== one dataset of {RECORDS:,} records of {FIELDS} fields, gunicorn --timeout 30")
    started = time.monotonic()
    names = services.read_fields(dataset.pk)
    scan = time.monotonic() - started
    assert names == sorted(NAMES)
    print(
        f"{'before: the scan for names':36s} {scan:.2f}s ({scan / RECORDS * 1e6:.1f} µs a"
        f" record; an export ran it twice before its first byte: {2 * scan:.1f}s)"
    )
    print(f"{'now: first export, names unknown':36s} {first_byte(export, headers)}")
    dataset.refresh_from_db()
    assert dataset.fields == sorted(NAMES), "the first export did not keep the names"
    for round_ in (1, 2, 3):
        print(f"{f'now: export {round_}, names kept':36s} {first_byte(export, headers)}")
