"""Check before save: `POST /imports/check` and `?dry_run=true` fetch the head of the source
through a real worker, under the same rules as a run, and answer what a run would find, with a
suggestion when the file does not parse as configured; nothing is saved (issue 12, point 1)."""

from __future__ import annotations

import pytest

from schedules.models import ScheduledImport
from tests.api_support import API, client_for
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def body(url: str, **overrides) -> dict:
    return {
        "name": "products",
        "source_url": url,
        "dataset": "products",
        "key_column": "sku",
        "schedule_type": "interval",
        "interval_seconds": 3600,
        **overrides,
    }


def test_a_check_answers_what_a_run_would_find_and_saves_nothing(alice, bob, csv_server, processes):
    api = client_for(alice)
    good = csv_server.serve("/p.csv", PRODUCTS_CSV)
    semicolons = csv_server.serve(
        "/semi.csv", PRODUCTS_CSV.replace(",", ";").replace('"Crate; large"', "Crate")
    )
    latin = csv_server.serve("/latin.csv", "sku,désignation\nA-1,Crème\n".encode("cp1252"))
    html = csv_server.serve("/page", "<!doctype html><html><body>Sign in</body></html>")
    metadata = "http://169.254.169.254/latest/meta-data"
    moved = csv_server.serve("/moved", b"", status=302, headers={"Location": metadata})
    processes.start("worker")
    wait_for(lambda: api.post(f"{API}/imports/check", body(good), format="json").json().get("ok"),
             60, what="a worker answering\n" + processes.logs())  # fmt: skip

    # A good file: its columns, its first rows as read, the key found
    found = api.post(f"{API}/imports/check", body(good), format="json")
    assert found.status_code == 200
    assert found.json()["columns"] == ["sku", "name", "price"]
    assert found.json()["rows"][0] == ["A-1", "Anvil", "10.50"]
    assert found.json()["key_column_found"] is True and found.json()["problems"] == []

    # A wrong key column
    wrong_key = api.post(f"{API}/imports/check", body(good, key_column="id"), format="json").json()
    assert wrong_key["ok"] is False and wrong_key["key_column_found"] is False
    assert "the key column 'id' is not in the file's columns" in wrong_key["problems"][0]

    # A wrong delimiter: the columns run together, and the check says which one fits
    semi = api.post(f"{API}/imports/check", body(semicolons), format="json").json()
    assert semi["ok"] is False and semi["suggestions"] == {"delimiter": ";"}
    assert "set the import's delimiter to ';'" in semi["problems"][-1]

    # A file in another encoding
    enc = api.post(f"{API}/imports/check", body(latin), format="json").json()
    assert enc["ok"] is False and enc["suggestions"] == {"encoding": "cp1252"}

    # A missing file, an HTML page, a required column absent, a redirect to a private address
    missing = api.post(
        f"{API}/imports/check", body(csv_server.base_url + "/gone.csv"), format="json"
    )
    assert "404" in missing.json()["problems"][0]
    page = api.post(f"{API}/imports/check", body(html), format="json").json()
    assert page["ok"] is False and "not a CSV" in page["problems"][0]
    spec = [{"name": "stock", "type": "int", "required": True}]
    required = api.post(f"{API}/imports/check", body(good, columns=spec), format="json").json()
    assert required["missing_required_columns"] == ["stock"] and required["ok"] is False
    private = api.post(f"{API}/imports/check", body(moved), format="json").json()
    assert private["ok"] is False and "private" in private["problems"][0]
    # (a private address written in the source itself is refused before any fetch: a 400)
    refused = api.post(f"{API}/imports/check", body(metadata), format="json")
    assert refused.status_code == 400
    assert "169.254.169.254 is a private address" in refused.json()["errors"]["source_url"][0]

    # dry_run on create and on update checks the same way and saves nothing
    assert ScheduledImport.objects.count() == 0
    dry = api.post(f"{API}/imports/?dry_run=true", body(good, key_column="id"), format="json")
    assert dry.status_code == 200 and dry.json()["key_column_found"] is False
    assert ScheduledImport.objects.count() == 0
    imp = make_import(alice, good)
    patched = api.patch(f"{API}/imports/{imp.pk}/?dry_run=true", {"delimiter": ";"}, format="json")
    assert patched.status_code == 200 and patched.json()["ok"] is False
    imp.refresh_from_db()
    assert imp.delimiter == ","

    # Another user's import is not found, dry run or not
    assert (
        client_for(bob)
        .patch(f"{API}/imports/{imp.pk}/?dry_run=true", {"delimiter": ";"}, format="json")
        .status_code
        == 404
    )


def test_an_invalid_body_is_refused_before_anything_is_fetched(alice, csv_server):
    api = client_for(alice)
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)

    answer = api.post(f"{API}/imports/check", body(url, interval_seconds=None), format="json")

    assert answer.status_code == 400 and "interval_seconds" in answer.json()["errors"]
    assert csv_server.hits == {}
