"""An export whose header the database cannot read within the web's timeout answers 503 in
words, as JSON, like every other statement the web's limit ends.

The header (every field the dataset's records hold) was read inside the streamed response,
after the view had returned: a statement ended there was gunicorn's bare 500 with an empty
body, no words (seen in the suite's own export test under load: the fields of 60,000 wide
records took longer than its 3-second timeout). Here the records' table is locked by another
session, as a migration would, so the header's statement waits until the limit ends it.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from common import web_statements
from schedules.models import Dataset, Record
from tests.api_support import API, client_for

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT_MS = 300


@pytest.fixture
def web_statement_limit(monkeypatch):
    """The web's statement limit on this test's connection, as gunicorn.conf.py sets it."""
    monkeypatch.setattr(web_statements, "_limit_ms", LIMIT_MS)
    monkeypatch.setattr(web_statements, "_timeout_seconds", 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, false)", [f"{LIMIT_MS}ms"])
    yield
    with connection.cursor() as cursor:
        cursor.execute("RESET statement_timeout")


def records_locked_until(released: threading.Event) -> threading.Event:
    """Lock the records' table from another session until `released`; set once it holds."""
    held = threading.Event()

    def hold() -> None:
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("BEGIN")
                cursor.execute(f"LOCK TABLE {Record._meta.db_table} IN ACCESS EXCLUSIVE MODE")
                held.set()
                released.wait(30)
                cursor.execute("ROLLBACK")
        finally:
            other.close()

    threading.Thread(target=hold, daemon=True).start()
    assert held.wait(30), "the records' table was not locked"
    return held


def test_an_export_whose_header_waits_past_the_limit_answers_503_in_words(
    alice, web_statement_limit
):
    # Given a dataset of alice's whose records' table another session holds locked
    dataset = Dataset.objects.create(owner=alice, name="wide")
    Record.objects.create(dataset=dataset, key="k1", data={"key": "k1"}, content_hash=1)
    client = client_for(alice)
    released = threading.Event()
    records_locked_until(released)

    # When she exports it
    try:
        response = client.get(f"{API}/datasets/wide/export")
    finally:
        released.set()

    # Then the statement the limit ended is a 503 saying so, as JSON, not a stream cut short
    assert response.status_code == 503, response
    assert response["Content-Type"].startswith("application/json")
    assert "the database did not answer within 0.3 s" in response.json()["detail"]
    assert response["Retry-After"] == "5"


def test_an_export_whose_header_is_read_streams_it_first(alice):
    # Given a dataset of alice's
    dataset = Dataset.objects.create(owner=alice, name="small")
    Record.objects.create(dataset=dataset, key="k1", data={"key": "k1", "n": 1}, content_hash=1)

    # When she exports it
    response = client_for(alice).get(f"{API}/datasets/small/export")

    # Then the header, read before the response started, still leads the stream
    assert response.status_code == 200
    assert b"".join(response.streaming_content).decode() == "key,n\r\n" + "k1,1\r\n"
