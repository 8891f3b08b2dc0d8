"""End to end through the API with a real worker (Procfile `worker`): `POST /imports/{id}/run`
queues a run that the worker executes; while a slow file downloads, `GET /runs/{id}/` shows
the bytes read so far; at the end, 100% and every row."""

import pytest

from tests.api_support import API, client_for
from tests.conftest import wait_for
from tests.factories import make_import

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

ROWS = 60_000


def slow_csv() -> bytes:
    rows = "".join(f"S-{i},item {i},{i % 100}.25\n" for i in range(ROWS))
    return ("sku,name,price\n" + rows).encode()


def test_a_running_import_shows_growing_progress_in_the_api(alice, csv_server, processes):
    # Given a ~1.7 MB file served in 64 KiB chunks, 0.1 s apart (about 3 s in all)
    body = slow_csv()
    url = csv_server.serve("/slow.csv", body, chunk_delay=0.1)
    imp = make_import(alice, url)
    processes.start("worker")
    client = client_for(alice)

    # When alice triggers it through the API and it runs on the worker
    triggered = client.post(f"{API}/imports/{imp.pk}/run")
    assert triggered.status_code == 202
    run_id = triggered.json()["id"]

    # Then, while it runs, the API shows part of the file read, from the task state
    def partial_progress():
        data = client.get(f"{API}/runs/{run_id}/").json()
        if data["status"] == "running" and data["bytes_read"] and data["progress"]:
            return data if data["progress"] < 1 else None
        return None

    during = wait_for(partial_progress, 60, interval=0.2, what="progress\n" + processes.logs())
    assert 0 < during["bytes_read"] < len(body)
    assert during["bytes_total"] == len(body)

    # And at the end the run is complete
    done = wait_for(
        lambda: (d := client.get(f"{API}/runs/{run_id}/").json())["status"] == "succeeded" and d,
        60,
        what="the run to succeed\n" + processes.logs(),
    )
    assert done["progress"] == 1.0 and done["rows_read"] == ROWS
