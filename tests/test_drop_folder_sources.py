"""Drop folders (issue 14, point 3): `file:///…` sources under IMPORT_DROP_DIRS only, a glob
taking the newest match, the same-file shortcut, and processed/ after a good run."""

from __future__ import annotations

import os
import re
import time

import pytest
from django.core.exceptions import ValidationError

from schedules.models import Record
from tasks import drop_folder
from tasks.errors import PermanentImportError, TransientImportError
from tests.api_support import API, client_for, import_body
from tests.drop_support import put
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import records, run_now
from tests.test_admin_imports import CHANGELIST, form_data

pytestmark = pytest.mark.django_db

OLDER = PRODUCTS_CSV.replace("10.50", "1.00")


def opened(path: str):
    return drop_folder.open_file(f"file://{path}")


def test_a_file_in_a_drop_folder_is_imported_and_the_run_names_it(alice, drop):
    put(drop / "products.csv", PRODUCTS_CSV)
    imp = make_import(alice, f"file://{drop}/products.csv")

    run = run_now(imp)

    assert run.status == "succeeded", run.error_message
    assert (run.rows_read, run.rows_inserted) == (3, 3)
    assert (run.bytes_read, run.bytes_total) == (len(PRODUCTS_CSV), len(PRODUCTS_CSV))
    assert run.source_file == str(drop / "products.csv")
    assert Record.objects.get(dataset=imp.dataset, key="A-1").data["price"] == "10.50"


def test_a_glob_takes_the_newest_match_and_records_which(alice, drop):
    now = time.time()
    put(drop / "products_1.csv", OLDER, mtime=now - 60)
    put(drop / "products_2.csv", PRODUCTS_CSV, mtime=now - 30)
    put(drop / "products_3.csv.part", "not, this\n", mtime=now)  # no match
    put(drop / ".products_4.csv", "hidden, upload in progress\n", mtime=now)
    imp = make_import(alice, f"file://{drop}/products_*.csv")

    run = run_now(imp)

    assert run.status == "succeeded", run.error_message
    assert run.source_file == str(drop / "products_2.csv")
    assert Record.objects.get(dataset=imp.dataset, key="A-1").data["price"] == "10.50"
    # A tie on the modification time goes to the greater name.
    put(drop / "products_0.csv", OLDER, mtime=now - 30)
    assert run_now(imp).source_file == str(drop / "products_2.csv")


def test_a_file_not_delivered_yet_is_a_transient_failure(alice, drop):
    with pytest.raises(TransientImportError, match="does not exist"), opened(f"{drop}/p.csv"):
        pass


def test_a_glob_matching_nothing_skips_the_run_without_failing_the_import(alice, drop):
    # Given a glob whose files were all taken (moved to processed/), or not delivered yet
    imp = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)

    # When it runs
    run = run_now(imp)

    # Then the run is skipped, saying why, and nothing counts against the import
    assert run.status == "skipped" and run.attempts == 1
    assert re.search(r"no file matches .*products_\*\.csv yet", run.error_message)
    imp.refresh_from_db()
    assert (imp.consecutive_failures, imp.failed_runs) == (0, 0)


def test_the_same_file_again_is_not_read_and_a_rewritten_one_is(alice, drop):
    put(drop / "products.csv", PRODUCTS_CSV)
    imp = make_import(alice, f"file://{drop}/products.csv")
    first = run_now(imp)

    again = run_now(imp)

    assert again.status == "succeeded" and again.rows_unchanged == 3
    assert again.bytes_read == 0, "unchanged size and time: nothing read"
    assert again.source_etag == first.source_etag and again.file_digest == first.file_digest
    put(drop / "products.csv", PRODUCTS_CSV.replace("10.50", "12.00"))
    changed = run_now(imp)
    assert changed.rows_updated == 1 and changed.source_etag != first.source_etag


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("{outside}/products.csv", "is outside the drop folders"),
        ("{drop}/../outside/products.csv", "'..' is not allowed"),
        ("{drop}/link-to-file.csv", "a link that leads outside"),
        ("{drop}/link-to-folder/products.csv", "leads outside the drop folders through a link"),
        ("{drop}/*/products.csv", "in the file name only"),
        ("{drop}/", "names a folder"),
    ],
)
def test_a_path_out_of_the_drop_folders_is_refused_when_saved(alice, drop, path, says):
    outside = drop.parent.parent / "outside"
    put(outside / "products.csv", PRODUCTS_CSV)
    os.symlink(outside / "products.csv", drop / "link-to-file.csv")
    os.symlink(outside, drop / "link-to-folder")
    url = "file://" + path.format(drop=drop, outside=outside)

    with pytest.raises(ValidationError) as refused:
        make_import(alice, url)

    assert says in str(refused.value.message_dict["source_url"])


def test_the_api_refuses_a_path_outside_naming_the_allowed_folders(alice, drop):
    answer = client_for(alice).post(
        f"{API}/imports", import_body(source_url="file:///etc/passwd"), format="json"
    )

    assert answer.status_code == 400
    problem = str(answer.json())
    assert "outside the drop folders" in problem and str(drop) in problem


def test_without_drop_folders_no_file_source_is_allowed(alice, settings, tmp_path):
    settings.IMPORT_DROP_DIRS = []
    put(tmp_path / "products.csv", PRODUCTS_CSV)

    with pytest.raises(ValidationError, match="IMPORT_DROP_DIRS"):
        make_import(alice, f"file://{tmp_path}/products.csv")


def test_a_link_put_in_after_the_save_fails_the_run_for_good(alice, drop):
    outside = drop.parent.parent / "outside"
    put(outside / "secret.csv", "sku,name\nX,secret\n")
    put(drop / "products.csv", PRODUCTS_CSV)
    imp = make_import(alice, f"file://{drop}/products.csv")
    os.unlink(drop / "products.csv")
    os.symlink(outside / "secret.csv", drop / "products.csv")

    run = run_now(imp)

    assert run.status == "failed" and run.attempts == 1
    assert "a link that leads outside the drop folders" in run.error_message
    assert not Record.objects.filter(dataset=imp.dataset).exists()
    with pytest.raises(PermanentImportError), opened(f"{drop}/products.csv"):
        pass


# The file moves once the run's end is committed: this test commits, as a worker does.
@pytest.mark.django_db(transaction=True)
def test_a_good_run_moves_its_file_to_processed_and_a_failed_one_does_not(alice, drop):
    (drop / "processed").mkdir()
    put(drop / "processed" / "products_1.csv", "already there\n")
    put(drop / "products_1.csv", PRODUCTS_CSV)
    imp = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)

    good = run_now(imp)

    assert good.status == "succeeded", good.error_message
    assert not (drop / "products_1.csv").exists()
    # The name was taken in processed/: the file gets a suffix, the other one stays.
    assert (drop / "processed" / "products_1-1.csv").read_text() == PRODUCTS_CSV
    assert (drop / "processed" / "products_1.csv").read_text() == "already there\n"
    put(drop / "products_2.csv", "sku,name\nA-1,Anvil\n\x00broken")
    bad = run_now(imp.__class__.objects.get(pk=imp.pk))
    assert bad.status == "failed" and bad.source_file == str(drop / "products_2.csv")
    assert (drop / "products_2.csv").exists()


def test_moving_to_processed_is_for_drop_folder_sources_only(alice, csv_server):
    with pytest.raises(ValidationError, match="processed"):
        make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), move_processed=True)


def test_the_admin_form_refuses_a_path_outside_and_saves_one_inside(client, alice, drop):
    client.force_login(alice.__class__.objects.create_superuser("root", "root@x.org", "x"))
    put(drop / "products.csv", PRODUCTS_CSV)
    imp = make_import(alice, f"file://{drop}/products.csv")

    refused = client.post(
        f"{CHANGELIST}{imp.pk}/change/", form_data(imp, source_url="file:///etc/passwd")
    )
    saved = client.post(
        f"{CHANGELIST}{imp.pk}/change/",
        form_data(imp, source_url=f"file://{drop}/products_*.csv", move_processed="on"),
    )

    errors = refused.context["adminform"].form.errors
    assert "outside the drop folders" in str(errors["source_url"]) and str(drop) in str(errors)
    assert saved.status_code == 302, saved.context["adminform"].form.errors
    imp.refresh_from_db()
    assert imp.source_url.endswith("/products_*.csv") and imp.move_processed


def test_a_question_mark_is_a_glob_and_a_hash_is_part_of_the_name(alice, drop):
    # Read as a URL's query and fragment, `products_?.csv` looked for `products_` (a transient
    # failure at every tick) and `products#2.csv` imported the file `products`
    put(drop / "products", "sku,name\nWRONG,wrong file\n")
    put(drop / "products#2.csv", PRODUCTS_CSV)
    put(drop / "orders_1.csv", PRODUCTS_CSV)
    hashed = make_import(alice, f"file://{drop}/products#2.csv")
    globbed = make_import(alice, f"file://{drop}/orders_?.csv", name="o", dataset="o")

    runs = [run_now(hashed), run_now(globbed)]

    assert [run.status for run in runs] == ["succeeded", "succeeded"]
    assert [run.source_file.rsplit("/", 1)[1] for run in runs] == ["products#2.csv", "orders_1.csv"]
    assert "WRONG" not in records(hashed)
