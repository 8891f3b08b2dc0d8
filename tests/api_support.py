"""Helpers of the API, admin and dashboard tests: token clients, run rows, and the queries the
ORM compiles."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.core.cache import caches
from django.db.models.sql import Query, compiler
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from knox.models import AuthToken
from rest_framework.test import APIClient

from schedules import services
from schedules.models import ImportRun, ScheduledImport

API = "/api/v1"
SOURCE = "https://example.com/products.csv"


def client_for(user) -> APIClient:
    """An API client that sends a fresh token of `user`, as a real client would."""
    _, token = AuthToken.objects.create(user=user, expiry=None)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def make_run(imp: ScheduledImport, status: str = "succeeded", **fields: Any) -> ImportRun:
    """A run row as a worker would have left it (no worker involved)."""
    now = timezone.now()
    defaults: dict[str, Any] = {"trigger": "schedule", "queued_at": now}
    if status not in ImportRun.ACTIVE_STATUSES:
        defaults.update(
            started_at=fields.get("queued_at", now),
            finished_at=fields.get("queued_at", now) + timedelta(seconds=1),
            duration_ms=1000,
        )
    defaults.update(fields)
    return ImportRun.objects.create(scheduled_import=imp, status=status, **defaults)


def fail_run(imp: ScheduledImport, error: str = "the server answered HTTP 503") -> None:
    """A run of `imp` ends failed, as a worker ends it (its notifications queued on commit)."""
    run = make_run(imp, "running", attempts=1)
    services.finish_run(run, "failed", counts=services.RunCounts(), error=error)


def import_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "products",
        "source_url": SOURCE,
        "dataset": "products",
        "key_column": "sku",
        "schedule_type": "cron",
        "cron_expression": "30 2 * * *",
        "timezone": "Europe/Berlin",
    }
    body.update(overrides)
    return body


def reset_throttle(scope: str, ident: object) -> None:
    """Forget one throttle's history (never `cache.clear()`: on Redis that is FLUSHDB, which
    would also drop the broker's queues and the leases)."""
    caches["throttle"].delete(f"throttle_{scope}_{ident}")


@contextmanager
def tables_compiled() -> Iterator[list[str]]:
    """The tables of the queries the ORM compiles meanwhile: a hot path's statements written
    once (schedules/rows.py) compile none."""
    compiled: list[str] = []
    with _compiling(lambda query: compiled.append(query.model._meta.db_table)):
        yield compiled


@contextmanager
def queries_compiled() -> Iterator[list[Query]]:
    """The queries the ORM compiles meanwhile, to see what each selects (`values_select`,
    `select_related`)."""
    compiled: list[Query] = []
    with _compiling(compiled.append):
        yield compiled


@contextmanager
def _compiling(record: Callable[[Query], object]) -> Iterator[None]:
    kinds = (compiler.SQLCompiler, compiler.SQLInsertCompiler, compiler.SQLUpdateCompiler,
             compiler.SQLDeleteCompiler)  # fmt: skip
    originals = {kind: kind.__dict__["as_sql"] for kind in kinds}

    def counting(as_sql):
        def counted(self, *args, **kwargs):
            record(self.query)
            return as_sql(self, *args, **kwargs)

        return counted

    for kind, as_sql in originals.items():
        kind.as_sql = counting(as_sql)
    try:
        yield
    finally:
        for kind, as_sql in originals.items():
            kind.as_sql = as_sql


def api_schema() -> dict[str, Any]:
    """The OpenAPI schema the API serves, as a dict."""
    return SchemaGenerator().get_schema(request=None, public=True)


def operation_url(path: str, imp: ScheduledImport, run: ImportRun) -> str:
    """A schema path with its placeholders filled: `run` for the runs' paths, `imp` for the
    others, and the dataset `products`."""
    return path.format(id=run.pk if path.startswith(f"{API}/runs/") else imp.pk, name="products")
