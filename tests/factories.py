"""Small builders for the suite's imports."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from schedules import services
from schedules.models import Dataset, Record, ScheduledImport

PRODUCTS_CSV = 'sku,name,price\nA-1,Anvil,10.50\nB-2,Bucket,3.20\nC-3,"Crate, large",7.00\n'


def make_import(owner, source_url: str, **overrides: Any) -> ScheduledImport:
    fields: dict[str, Any] = {
        "name": "products",
        "source_url": source_url,
        "dataset": "products",
        "key_column": "sku",
        "schedule_type": "interval",
        "interval_seconds": 3600,
    }
    fields.update(overrides)
    return services.create_import(owner, **fields)


def make_records(dataset: Dataset, records: Iterable[Record]) -> list[Record]:
    """Records written directly, their dataset's count kept as an import's merge keeps it."""
    made = Record.objects.bulk_create(records)
    services.recount_records([dataset.pk])
    return made
