"""Small builders for the suite's imports."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.test import override_settings

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


def make_import_saved_earlier(owner, source_url: str, **overrides: Any) -> ScheduledImport:
    """An import whose source or callback is a private address, as one saved before such
    addresses were refused at save: it stays as it is, and the check when it connects still
    refuses it. The fetch-time tests start from one."""
    urls = (source_url, overrides.get("callback_url") or "")
    hosts = [urlsplit(url).hostname for url in urls if url]
    allowed = [f"[{host}]:*" if ":" in host else f"{host}:*" for host in hosts if host]
    with override_settings(ALLOWED_PRIVATE_HOSTS=allowed):
        return make_import(owner, source_url, **overrides)


def make_records(dataset: Dataset, records: Iterable[Record]) -> list[Record]:
    """Records written directly, their dataset's count kept as an import's merge keeps it."""
    made = Record.objects.bulk_create(records)
    services.recount_records([dataset.pk])
    return made
