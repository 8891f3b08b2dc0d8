"""An import deleted while its run runs: the run stops at its next safe point as a cancelled one
does, nothing of it lands, and the worker says so in one line.

`DELETE /imports/{id}/` deletes the import's runs with it. The worker went on fetching the whole
file, then its merge failed at the commit on the dataset's foreign key to the deleted run: a
traceback in the worker's log ("run crashed"), and Flower showed the task failed with
PostgreSQL's words ("violates foreign key constraint").
"""

import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests
from django.db import connection

from schedules.models import Dataset, ImportRun, ScheduledImport
from tasks import engine, runner
from tasks.engine import merge
from tests.api_support import API, client_for
from tests.conftest import Route, wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import start_flower

pytestmark = pytest.mark.django_db(transaction=True)

WORDS = "its import was deleted while it ran; the dataset was not changed"
AUTH = ("ops", "s3cret-flower")


def run_deleting(imp: ScheduledImport, delete: Callable[[ImportRun], Any]) -> tuple[dict, Any]:
    """Run a run of `imp` in this process, calling `delete(run)` at its first progress report;
    the run's task result, and what `delete` answered."""
    run = ImportRun.objects.create(scheduled_import=imp, trigger="manual")
    answers = []

    def at_first_report(progress: dict) -> None:
        if not answers:
            answers.append(delete(run))

    with engine.listen(at_first_report):
        result = runner.execute(run.pk)
    return result, answers[0]


def test_a_run_whose_import_is_deleted_while_it_fetches_stops_there(alice, csv_server, caplog):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))

    result, answer = run_deleting(
        imp, lambda run: client_for(alice).delete(f"{API}/imports/{imp.pk}/")
    )

    assert answer.status_code == 204
    assert (result["status"], result["error"]) == ("cancelled", WORDS)
    assert Dataset.objects.get(pk=imp.dataset_id).records.count() == 0
    assert "run crashed" not in caplog.text


def test_a_run_deleted_alone_while_it_runs_says_so(alice, csv_server, admin_client):
    # Given a run of alice's running, and staff who delete that run in the admin
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))

    result, answer = run_deleting(
        imp,
        lambda run: admin_client.post(
            f"/admin/schedules/importrun/{run.pk}/delete/", {"post": "yes"}
        ),
    )

    # Then it stops saying it was deleted, not its import, which stays
    assert answer.status_code == 302
    assert (result["status"], result["error"]) == (
        "cancelled",
        "it was deleted while it ran; the dataset was not changed",
    )
    assert ScheduledImport.objects.filter(pk=imp.pk).exists()
    assert Dataset.objects.get(pk=imp.dataset_id).records.count() == 0


# Small files end their run in the merge's own transaction (services.finish_with_rows), big
# ones write their counts there (services.record_committed_counts): both are the last safe point.
@pytest.mark.parametrize("small", [True, False], ids=["small file", "big file"])
def test_a_run_whose_import_is_deleted_during_its_merge_lands_nothing(
    alice, csv_server, caplog, monkeypatch, small
):
    if not small:
        monkeypatch.setattr(merge, "SMALL_TABLE_ROWS", 0)
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    run = ImportRun.objects.create(scheduled_import=imp, trigger="manual")
    answers = []
    note_merge = merge.note_merge

    def delete_the_import_from_another_request(*args, **kwargs) -> None:
        note_merge(*args, **kwargs)
        # The rows are written, not committed: another web request deletes the import.
        request = threading.Thread(target=delete_the_import)
        request.start()
        request.join(10)

    def delete_the_import() -> None:
        try:
            answers.append(client_for(alice).delete(f"{API}/imports/{imp.pk}/"))
        finally:
            connection.close()

    monkeypatch.setattr(merge, "note_merge", delete_the_import_from_another_request)
    result = runner.execute(run.pk)

    assert answers[0].status_code == 204
    assert (result["status"], result["error"]) == ("cancelled", WORDS)
    assert Dataset.objects.get(pk=imp.dataset_id).records.count() == 0
    assert "run crashed" not in caplog.text


@pytest.mark.processes
def test_deleting_an_import_while_a_worker_fetches_it_stops_the_download(
    alice, csv_server, processes
):
    # Given a worker, Flower, and an import of a 1.7 MB file served slowly (about 6 s)
    body = "sku,name,price\n" + "".join(f"S-{i},item {i},{i}.25\n" for i in range(60_000))
    sent = [0]
    csv_server.routes["/slow.csv"] = lambda: Route(
        body.encode(), chunk_delay=0.2, after_chunk=lambda n: sent.__setitem__(0, n)
    )
    imp = make_import(alice, csv_server.base_url + "/slow.csv")
    processes.start("worker")
    base = start_flower(processes, AUTH)
    client = client_for(alice)
    run_id = client.post(f"{API}/imports/{imp.pk}/run").json()["id"]
    wait_for(
        lambda: client.get(f"{API}/runs/{run_id}/").json()["bytes_read"],
        60,
        interval=0.2,
        what="the download to start\n" + processes.logs(),
    )

    # When its owner deletes the import while the worker fetches the file
    assert client.delete(f"{API}/imports/{imp.pk}/").status_code == 204

    # Then the worker stops at its next progress report, saying why in one line
    log = wait_for(
        lambda: WORDS in (text := processes.log_of("worker")) and text,
        30,
        what="the worker to stop the run\n" + processes.logs(),
    )
    assert f"run finished import={imp.pk} run={run_id} status=cancelled: {WORDS}" in log
    assert "Traceback" not in log
    # ... having left the rest of the file unread, and the dataset as it was
    assert sent[0] < len(body)
    assert Dataset.objects.get(pk=imp.dataset_id).records.count() == 0
    # ... and Flower lists its task as ended, with the same words, not as failed
    task = wait_for(
        lambda: (t := _task_of_run(base, run_id)) and t["state"] in ("SUCCESS", "FAILURE") and t,
        30,
        what="the task in flower\n" + processes.logs(),
    )
    assert task["state"] == "SUCCESS"
    assert "'status': 'cancelled'" in task["result"] and WORDS in task["result"]


def _task_of_run(base: str, run_id: int) -> dict | None:
    tasks = requests.get(f"{base}/api/tasks", auth=AUTH, timeout=5).json()
    return next((t for t in tasks.values() if f"'run_id': {run_id}" in (t["result"] or "")
                 or f"({run_id}," in (t["args"] or "")), None)  # fmt: skip


def test_an_import_moved_to_another_dataset_while_it_runs_stops_its_run(alice, csv_server):
    # It merged into the old dataset and said succeeded, the new one left empty (and failed,
    # counted, when the old one was deleted meanwhile)
    from schedules import services as schedules_services
    from schedules.models import Dataset, ScheduledImport
    from tasks import engine
    from tests.factories import PRODUCTS_CSV, make_import
    from tests.importer_support import run_now

    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), dataset="old")
    new = schedules_services.get_or_create_dataset(alice, "new")
    moved = []

    def move_once(progress: dict) -> None:
        if not moved:
            moved.append(ScheduledImport.objects.filter(pk=imp.pk).update(dataset=new))

    with engine.listen(move_once):
        run = run_now(imp)

    assert run.status == "cancelled", run.error_message
    assert run.error_message == (
        "its import was moved to another dataset while it ran; neither dataset was changed, "
        "and the next run fills the new one"
    )
    assert not Dataset.objects.get(name="old").records.exists()
    assert run_now(ScheduledImport.objects.get(pk=imp.pk)).rows_inserted == 3
    assert new.records.count() == 3
