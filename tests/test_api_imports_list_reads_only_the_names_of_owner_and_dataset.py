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
    # imports, and the imports' query reads no column of the owner but the name
    assert [(i["owner"], i["dataset"]) for i in shown][:2] == [("alice", "one"), ("alice", "two")]
    assert shown[0]["active_run"]["progress"] == 0.25 and len(shown) == 7
    assert len(queries) == len(few)
    imports = [q for q in queries if 'FROM "schedules_scheduledimport"' in q and "COUNT(" not in q]
    assert len(imports) == 1, imports
    assert '"auth_user"."username"' in imports[0] and '"schedules_dataset"."name"' in imports[0]
    assert '"auth_user"."password"' not in imports[0]
    assert '"auth_user"."date_joined"' not in imports[0]
