"""Each user's imports read their own folder in each drop folder (`<drop folder>/<username>/`);
staff read all of them, and IMPORT_DROP_DIRS_SHARED lets every user read all (one team).

Every user of an installation could read any other's deliveries: bob saved an import on
alice's payroll file and imported it, and with `move_processed` filed it away, so alice's next
run was skipped as "no file matches yet" and her dataset stayed empty. The check before save
showed bob her rows."""

from __future__ import annotations

import pytest

from schedules import unsaved_checks
from schedules.models import ImportRun, ScheduledImport
from tasks import source_check as worker_check
from tests.api_support import API, client_for, import_body
from tests.drop_support import put
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import run_now

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", "bob@example.com", "bob-password")


def test_a_user_cannot_save_an_import_of_another_users_folder(bob, drop):
    # Given alice's delivery in her folder
    put(drop / "payroll_1.csv", PRODUCTS_CSV)
    bobs = drop.parent / "bob"

    # When bob saves an import of it, or of her processed/ folder, then each is refused naming
    # the folders he may read
    for path in (drop / "payroll_*.csv", drop / "processed" / "payroll_1.csv"):
        body = import_body(source_url=f"file://{path}", move_processed=True)
        answer = client_for(bob).post(f"{API}/imports/", body, format="json")
        assert answer.status_code == 400
        [said] = answer.json()["errors"]["source_url"]
        assert said == (
            f"{path} is outside the drop folders; only files under {bobs} (IMPORT_DROP_DIRS: "
            "the owner's own folders) can be imported"
        )
    # ... and his own folder is his to use
    bobs.mkdir()
    put(bobs / "orders.csv", PRODUCTS_CSV)
    body = import_body(source_url=f"file://{bobs}/orders.csv")
    assert client_for(bob).post(f"{API}/imports/", body, format="json").status_code == 201


def test_a_run_of_another_users_file_is_refused_and_leaves_it_where_it_is(alice, bob, drop):
    # Given bob's import of alice's delivery, saved before folders were each user's own
    put(drop / "payroll_1.csv", PRODUCTS_CSV)
    imp = make_import(bob, "https://example.com/p.csv", move_processed=False)
    ScheduledImport.objects.filter(pk=imp.pk).update(
        source_url=f"file://{drop}/payroll_*.csv", move_processed=True
    )
    imp.refresh_from_db()

    # When it runs, then it fails for good, saying why, and alice's file stays for her
    run = run_now(imp)
    assert run.status == ImportRun.Status.FAILED
    assert "is outside the drop folders" in run.error_message
    assert (drop / "payroll_1.csv").exists() and not imp.dataset.records.exists()
    mine = make_import(alice, f"file://{drop}/payroll_*.csv", move_processed=True)
    assert run_now(mine).rows_inserted == 3


def test_the_check_before_save_shows_no_other_users_rows(alice, bob, drop):
    put(drop / "payroll_1.csv", PRODUCTS_CSV)
    fields = {"source_url": f"file://{drop}/payroll_1.csv", "delimiter": ",", "encoding": "utf-8",
              "has_header": True, "key_column": "sku"}  # fmt: skip

    def checked(user) -> dict:
        return worker_check.check_fields(unsaved_checks.put({**fields, "owner_id": user.pk}, 10))

    assert checked(alice)["ok"] and checked(alice)["rows"][0] == ["A-1", "Anvil", "10.50"]
    bobs = checked(bob)
    assert not bobs["ok"] and bobs["rows"] == []
    assert "outside the drop folders" in bobs["problems"][0]


def test_staff_and_a_shared_installation_read_every_users_folder(alice, bob, drop, settings):
    put(drop / "products.csv", PRODUCTS_CSV)
    url = f"file://{drop}/products.csv"
    bob.is_staff = True
    bob.save()
    assert run_now(make_import(bob, url, name="staff", dataset="staff")).rows_inserted == 3

    bob.is_staff = False
    bob.save()
    settings.IMPORT_DROP_DIRS_SHARED = True
    assert run_now(make_import(bob, url, name="team", dataset="team")).rows_inserted == 3


def test_a_username_that_names_no_folder_reads_none(django_user_model, drop):
    # `..` is a valid username: its folder would be the one above the drop folder
    dots = django_user_model.objects.create_user("..", password="x")
    put(drop.parent.parent / "secret.csv", PRODUCTS_CSV)

    answer = client_for(dots).post(
        f"{API}/imports/",
        import_body(source_url=f"file://{drop.parent.parent}/secret.csv"),
        format="json",
    )

    assert answer.status_code == 400
    assert answer.json()["errors"]["source_url"] == [
        "file:// sources are off for this user: their name cannot be a folder's"
    ]


def test_an_import_moved_to_another_owner_in_the_admin_is_checked_again(client, alice, bob, drop):
    # It was saved (the source unchanged was not checked), and each of its runs then failed
    from tests.test_admin_imports import CHANGELIST, form_data

    client.force_login(alice.__class__.objects.create_superuser("root", "root@x.org", "x"))
    put(drop / "products.csv", PRODUCTS_CSV)
    imp = make_import(alice, f"file://{drop}/products.csv")

    moved = client.post(f"{CHANGELIST}{imp.pk}/change/", form_data(imp, owner=bob.pk))

    assert moved.status_code == 200
    [said] = moved.context["adminform"].form.errors["source_url"]
    assert "is outside the drop folders" in said and str(drop.parent / "bob") in said
    imp.refresh_from_db()
    assert imp.owner == alice
