"""`GET /datasets/` and `GET /datasets/{name}/records/` (cursor pagination)."""

import pytest

from schedules.models import Record
from tests.api_support import API, SOURCE, client_for
from tests.factories import make_import, make_records

pytestmark = pytest.mark.django_db


def fill(dataset, count: int) -> None:
    make_records(
        dataset,
        (
            Record(dataset=dataset, key=f"k{i:03}", data={"n": i}, content_hash=i)
            for i in range(count)
        ),
    )


def test_my_datasets_are_listed_with_their_record_counts(alice):
    imp = make_import(alice, SOURCE)
    fill(imp.dataset, 3)

    response = client_for(alice).get(f"{API}/datasets/")

    assert response.status_code == 200
    assert response.json()["count"] == 1
    dataset = response.json()["results"][0]
    assert dataset["name"] == "products" and dataset["record_count"] == 3
    assert dataset["imports"] == [imp.pk]


def test_one_dataset_is_read_by_name(alice):
    make_import(alice, SOURCE)

    response = client_for(alice).get(f"{API}/datasets/products/")

    assert response.status_code == 200 and response.json()["name"] == "products"


def test_records_are_paged_by_cursor_to_the_end(alice):
    # Given 25 records
    imp = make_import(alice, SOURCE)
    fill(imp.dataset, 25)
    client = client_for(alice)

    # When alice follows `next` with pages of 10
    page = client.get(f"{API}/datasets/products/records/", {"page_size": 10}).json()
    keys, pages = [], 0
    while True:
        pages += 1
        assert set(page) == {"count", "next", "previous", "results"}
        assert page["count"] == 25
        keys += [record["key"] for record in page["results"]]
        if not page["next"]:
            break
        assert "cursor=" in page["next"]
        page = client.get(page["next"]).json()

    # Then she saw every record once, in three pages
    assert pages == 3
    assert keys == [f"k{i:03}" for i in range(25)]
    first = client.get(f"{API}/datasets/products/records/").json()["results"][0]
    assert first["data"] == {"n": 0} and set(first) >= {"key", "content_hash", "last_changed_run"}
    assert first["content_hash"] == "0000000000000000"


def test_a_forged_cursor_is_a_404(alice):
    make_import(alice, SOURCE)

    response = client_for(alice).get(f"{API}/datasets/products/records/", {"cursor": "bogus"})

    assert response.status_code == 404 and response.json()["detail"]


def test_an_unknown_dataset_is_a_404(alice):
    response = client_for(alice).get(f"{API}/datasets/nothing/records/")

    assert response.status_code == 404
    assert response.json()["detail"]


def test_a_well_formed_cursor_with_a_forged_position_is_a_404_not_a_500(alice):
    # base64 of "p=abc": a valid cursor whose position is not an id
    make_import(alice, SOURCE)

    response = client_for(alice).get(f"{API}/datasets/products/records/", {"cursor": "cD1hYmM="})

    assert response.status_code == 404


def test_an_owner_with_a_nul_character_is_a_400(alice):
    make_import(alice, SOURCE)

    response = client_for(alice).get(f"{API}/datasets/products/records/", {"owner": "a\x00b"})

    assert response.status_code == 400 and "owner" in response.json()["errors"]
