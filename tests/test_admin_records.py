"""Records in the admin: browsed and deleted, never added or edited; a deletion marks the
dataset changed, so the next import merges its file again instead of taking it as known."""

import pytest

from schedules.models import Dataset, Record
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import records, run_now

pytestmark = pytest.mark.django_db

BODY = "sku,name\nA-1,Anvil\nB-2,Bucket\n"


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "x"))
    return client


def test_records_cannot_be_added_in_the_admin(admin_client):
    assert admin_client.get("/admin/schedules/record/add/").status_code == 403


def test_a_record_deleted_in_the_admin_comes_back_with_the_next_import(
    admin_client, alice, csv_server
):
    # Given a file imported once (the dataset notes it)
    imp = make_import(alice, csv_server.serve("/p.csv", BODY))
    run_now(imp)
    assert Dataset.objects.get(pk=imp.dataset_id).applied_digest
    record = Record.objects.get(dataset=imp.dataset, key="B-2")

    # When a staff user deletes one record in the admin
    response = admin_client.post(f"/admin/schedules/record/{record.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.context["adminform"].form.errors

    # Then the dataset is marked changed and the same file brings the record back
    assert Dataset.objects.get(pk=imp.dataset_id).applied_digest == ""
    run = run_now(imp)
    assert (run.rows_inserted, run.rows_unchanged) == (1, 1)
    assert set(records(imp)) == {"A-1", "B-2"}


def test_records_deleted_by_the_admin_action_mark_the_dataset_changed(
    admin_client, alice, csv_server
):
    imp = make_import(alice, csv_server.serve("/p.csv", BODY))
    run_now(imp)
    ids = list(Record.objects.values_list("pk", flat=True))

    response = admin_client.post(
        "/admin/schedules/record/",
        {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert not Record.objects.exists()
    assert Dataset.objects.get(pk=imp.dataset_id).applied_digest == ""
    assert run_now(imp).rows_inserted == 2


def test_records_show_their_data_and_filter_by_dataset(admin_client, alice, csv_server):
    # Given two datasets of one owner
    first = make_import(alice, csv_server.serve("/p.csv", BODY))
    second = make_import(
        alice, csv_server.serve("/q.csv", "sku,name\nZ-9,Zither\n"), name="other", dataset="other"
    )
    run_now(first)
    run_now(second)

    # When staff list the records of one dataset
    page = admin_client.get("/admin/schedules/record/", {"dataset__id__exact": second.dataset_id})
    html = page.content.decode()

    # Then they see its rows with their data, and the filter offers both datasets
    assert "Zither" in html and "Anvil" not in html
    assert "{&quot;sku&quot;: &quot;Z-9&quot;, &quot;name&quot;: &quot;Zither&quot;}" in html
    assert "alice / other" in html and "alice / products" in html

    # And one record's page shows its fields one by one
    record = Record.objects.get(key="Z-9")
    detail = admin_client.get(f"/admin/schedules/record/{record.pk}/change/").content.decode()
    assert "<tr><th>name</th><td><code>&quot;Zither&quot;</code></td></tr>" in detail


def test_a_datasets_owner_and_the_file_applied_last_are_not_edited_in_the_admin(
    admin_client, alice, django_user_model, csv_server
):
    # Given alice's dataset, filled by her import
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    run_now(imp)
    bob = django_user_model.objects.create_user("bob", password="x")
    url = f"/admin/schedules/dataset/{imp.dataset_id}/change/"

    # When staff post its form with another owner and another file applied
    page = admin_client.get(url).content.decode()
    response = admin_client.post(
        url,
        {
            "name": "products", "owner": bob.pk, "applied_digest": "", "applied_run": "",
            "created_at_0": "2026-12-01", "created_at_1": "10:00:00",
        },
    )  # fmt: skip

    # Then the name is saved but the owner and the engine's note are kept: alice's import never
    # writes into bob's dataset, and the next run does not take a changed dataset as known
    assert response.status_code == 302, response.context["adminform"].form.errors
    dataset = Dataset.objects.get(pk=imp.dataset_id)
    assert dataset.owner == alice and dataset.applied_digest
    # ... and the page lists no run to choose from (it listed every run of every user)
    assert "<select" not in page.split('id="dataset_form"')[1]
