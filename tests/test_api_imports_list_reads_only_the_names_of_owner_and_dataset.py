"""`GET /imports/` reads of each import's owner and dataset their names alone: the owner's
password hash, dates and flags stay in the database, and nothing is read again row by row."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.api_support import API, SOURCE, client_for, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def listed(client) -> tuple[list[dict], list[str]]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"{API}/imports/")
    assert response.status_code == 200, response.json()
    return response.json()["results"], [q["sql"] for q in queries.captured_queries]


def test_the_import_list_reads_the_owners_and_datasets_names_alone(alice):
    # Given two imports, one of them running
    client = client_for(alice)
    running = make_import(alice, SOURCE, name="first", dataset="one")
    make_run(running, "running", bytes_read=1, bytes_total=4)
    make_import(alice, SOURCE, name="second", dataset="two")
    _, few = listed(client)
    for n in range(5):
        make_import(alice, SOURCE, name=f"more {n}", dataset=f"more-{n}")

    # When alice lists her imports
    shown, queries = listed(client)

    # Then each shows its owner, dataset and run in progress, in as many queries as for two
    # imports, and the page's read (schedules.listed_imports) takes no column of the owner but
    # the name
    assert [(i["owner"], i["dataset"]) for i in shown][:2] == [("alice", "one"), ("alice", "two")]
    assert shown[0]["active_run"]["progress"] == 0.25 and len(shown) == 7
    assert len(queries) == len(few)
    page_reads = [q for q in queries if 'JOIN "schedules_dataset"' in q]
    assert len(page_reads) == 1, queries
    assert 'u."username"' in page_reads[0] and 'd."name"' in page_reads[0]
    assert "password" not in page_reads[0] and "date_joined" not in page_reads[0]
