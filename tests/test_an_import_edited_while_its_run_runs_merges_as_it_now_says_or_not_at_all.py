"""An import whose dataset, key column or mode is changed while its run runs: the run merges
as the import now says, or not at all (race hunt); and an edit that changes none of them (a
PUT of the description) does not wait for a merge (review).

The merge used the import as the attempt had read it. Switched from sync to upsert while its
run downloaded (which let the owner add a second import to the dataset, whose run landed its
rows), the run still deleted, as sync, the second import's records, and both runs said
`succeeded`. Given another key column on an empty dataset, the run keyed its records by the
old one and noted it on the dataset, and every run after it failed. And an edit made during the
merge itself was judged on the dataset as it was before the merge: it moved the import while
the run filled the old dataset, or took a key the merge's records then contradicted.

Now the merge reads the import again once it holds the dataset's lock, and an edit committed
before that cancels the run, nothing written; an edit of those fields waits for a merge in
progress (services.as_it_is_now) and is judged on what it wrote.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from schedules import services
from schedules.models import Dataset, ScheduledImport
from tasks.engine import merge
from tests.api_support import API, client_for
from tests.factories import make_import
from tests.importer_support import on_a_thread, run_now
from tests.test_admin_imports import CHANGELIST, form_data

pytestmark = pytest.mark.django_db(transaction=True)

CSV = "sku,id,name\nA-1,1,Anvil\nB-2,2,Bucket\nC-3,3,Crate\n"


def patch(user, imp: ScheduledImport, body: dict) -> Callable:
    """The owner's PATCH of `body` to `imp`, to send from elsewhere (on_a_thread)."""
    return lambda: client_for(user).patch(f"{API}/imports/{imp.pk}/", body, format="json")


def edit_before_the_merge(monkeypatch, user, imp: ScheduledImport, body: dict) -> list:
    """PATCH `body` once the run has read its import and staged its file, before its merge
    takes the dataset's lock (an edit saved while the run downloaded); the answers."""
    lock_dataset = merge._lock_dataset
    answers: list = []

    def edit_then_lock(*args):
        if not answers:
            thread, said = on_a_thread(patch(user, imp, body))
            thread.join(30)
            answers.extend(said)
        return lock_dataset(*args)

    monkeypatch.setattr(merge, "_lock_dataset", edit_then_lock)
    return answers


def test_a_sync_import_made_upsert_while_its_run_downloads_deletes_nothing(
    alice, csv_server, monkeypatch
):
    # Given a sync import whose dataset holds a record its file lacks
    imp = make_import(
        alice, csv_server.serve("/p.csv", CSV + "Z-9,9,Zither\n"), dataset="shared", mode="sync"
    )
    assert run_now(imp).status == "succeeded"
    dataset = Dataset.objects.get(pk=imp.dataset_id)
    csv_server.serve("/p.csv", CSV)

    # When it is made upsert while its next run downloads
    answers = edit_before_the_merge(monkeypatch, alice, imp, {"mode": "upsert"})
    run = run_now(ScheduledImport.objects.get(pk=imp.pk))

    # Then the edit is taken, and the run, read as sync, is cancelled with nothing deleted
    assert answers[0].status_code == 200, answers[0].json()
    assert (run.status, run.error_message) == ("cancelled", merge.REKEYED)
    assert run.rows_deleted == 0
    assert set(dataset.records.values_list("key", flat=True)) == {"A-1", "B-2", "C-3", "Z-9"}
    # And the next run imports as upsert, keeping the record
    monkeypatch.undo()
    after = run_now(ScheduledImport.objects.get(pk=imp.pk))
    assert (after.status, after.rows_deleted) == ("succeeded", 0)
    assert dataset.records.filter(key="Z-9").exists()


def test_a_key_column_changed_while_the_first_run_downloads_keys_the_next_run(
    alice, csv_server, monkeypatch
):
    # Given an import whose first run is downloading into an empty dataset
    imp = make_import(alice, csv_server.serve("/p.csv", CSV), dataset="keyed")

    # When its key column is changed meanwhile (an empty dataset takes any key)
    answers = edit_before_the_merge(monkeypatch, alice, imp, {"key_column": "id"})
    run = run_now(imp)

    # Then the run, keyed by the old column, is cancelled with nothing written
    assert answers[0].status_code == 200, answers[0].json()
    assert (run.status, run.error_message) == ("cancelled", merge.REKEYED)
    dataset = Dataset.objects.get(pk=imp.dataset_id)
    assert (dataset.key_column, dataset.records.count()) == ("", 0)
    # And the next run keys the records as the owner asked (it failed, every run after)
    monkeypatch.undo()
    after = run_now(ScheduledImport.objects.get(pk=imp.pk))
    assert after.status == "succeeded", after.error_message
    dataset.refresh_from_db()
    assert dataset.key_column == "id"
    assert set(dataset.records.values_list("key", flat=True)) == {"1", "2", "3"}


def test_a_key_column_changed_during_the_first_merge_is_judged_on_what_it_wrote(
    alice, csv_server, monkeypatch
):
    # Given an import whose first run is merging into an empty dataset
    imp = make_import(alice, csv_server.serve("/p.csv", CSV), dataset="keyed")
    started = during_the_merge(monkeypatch, patch(alice, imp, {"key_column": "id"}), wait=2)

    # When its key column is changed meanwhile
    run = run_now(imp)
    answered_during_the_merge, thread, answers = started
    thread.join(30)
    assert not answered_during_the_merge, "the edit went on during the merge"

    # Then the edit waited for the merge, and is refused in words on the records it wrote
    assert run.status == "succeeded", run.error_message
    assert answers[0].status_code == 400, answers[0].json()
    assert "holds 3 record(s) keyed by 'sku'" in str(answers[0].json()["errors"]["key_column"])
    # And the import, keyed as its records are, goes on running
    monkeypatch.undo()
    assert run_now(ScheduledImport.objects.get(pk=imp.pk)).status == "succeeded"


def test_an_import_moved_during_its_merge_is_moved_after_it(alice, csv_server, monkeypatch):
    # Given an import whose run is merging into its dataset
    imp = make_import(alice, csv_server.serve("/p.csv", CSV), dataset="old")
    services.get_or_create_dataset(alice, "new")
    started = during_the_merge(monkeypatch, patch(alice, imp, {"dataset": "new"}), wait=2)

    # When it is moved to another dataset meanwhile
    run = run_now(imp)
    answered_during_the_merge, thread, answers = started
    thread.join(30)
    assert not answered_during_the_merge, "the move went on during the merge"

    # Then the move waited for the merge: the run filled the dataset it ran for, and said so,
    # and the import writes to the new one from its next run
    assert answers[0].status_code == 200, answers[0].json()
    assert run.status == "succeeded", run.error_message
    assert Dataset.objects.get(owner=alice, name="old").records.count() == 3
    monkeypatch.undo()
    after = run_now(ScheduledImport.objects.get(pk=imp.pk))
    assert after.status == "succeeded", after.error_message
    assert Dataset.objects.get(owner=alice, name="new").records.count() == 3


def during_the_merge(monkeypatch, request: Callable, wait: float = 5) -> list:
    """Call `request()` on a thread of its own once the run's merge is written, not committed,
    and give it `wait` seconds; [answered during the merge, thread, answers]."""
    note_merge = merge.note_merge
    started: list = []

    def edit(*args, **kwargs) -> None:
        note_merge(*args, **kwargs)
        if started:
            return
        thread, answers = on_a_thread(request)
        thread.join(wait)
        started.extend([bool(answers), thread, answers])

    monkeypatch.setattr(merge, "note_merge", edit)
    return started


def test_a_put_of_the_description_does_not_wait_for_a_merge(alice, csv_server, monkeypatch):
    # Given an import whose run is merging, and its owner's client, which read the import
    client = client_for(alice)
    imp = make_import(alice, csv_server.serve("/p.csv", CSV), dataset="big")
    body = {**client.get(f"{API}/imports/{imp.pk}/").json(), "description": "nightly"}
    body.pop("periodic_task", None)

    # When the client PUTs the import back with another description during the merge
    started = during_the_merge(
        monkeypatch, lambda: client.put(f"{API}/imports/{imp.pk}/", body, format="json")
    )
    run = run_now(imp)
    answered_during_the_merge, thread, answers = started
    thread.join(30)

    # Then the edit, which changes neither key column, mode nor dataset, did not wait for
    # the merge (a merge longer than the web's statement limit made it a 503)
    assert run.status == "succeeded", run.error_message
    assert answers[0].status_code == 200, answers[0].json()
    assert answered_during_the_merge, "a PUT of the description waited for the dataset's merge"


def test_an_admin_key_edit_during_the_first_merge_is_judged_on_what_it_wrote(
    alice, csv_server, monkeypatch, django_user_model
):
    # Given an import whose first run is merging into an empty dataset, and staff on its page
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "x")
    browser = Client()
    browser.force_login(admin)
    imp = make_import(alice, csv_server.serve("/p.csv", CSV), dataset="keyed")
    data = form_data(imp, key_column="id")

    # When staff change its key column meanwhile (the form checked an empty dataset)
    started = during_the_merge(
        monkeypatch, lambda: browser.post(f"{CHANGELIST}{imp.pk}/change/", data)
    )
    run = run_now(imp)
    _, thread, answers = started
    thread.join(30)

    # Then the edit is not saved over the records the merge keyed by 'sku', and runs go on
    assert run.status == "succeeded", run.error_message
    assert Dataset.objects.get(pk=imp.dataset_id).key_column == "sku"
    monkeypatch.undo()
    after = run_now(ScheduledImport.objects.get(pk=imp.pk))
    assert after.status == "succeeded", (answers[0].status_code, after.error_message)
    assert ScheduledImport.objects.get(pk=imp.pk).key_column == "sku"
