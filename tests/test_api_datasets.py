"""`GET /datasets/` and `GET /datasets/{name}/records/` (cursor pagination)."""

from base64 import b64encode

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


@pytest.mark.parametrize("position", ["a\x00b", "k" * 2049], ids=["a NUL", "longer than a key"])
def test_a_well_formed_cursor_with_a_forged_position_is_a_404_not_a_500(alice, position):
    # A valid cursor whose position can be no key (records are paged by key)
    make_import(alice, SOURCE)
    cursor = b64encode(f"p=k:{position}".encode()).decode()

    response = client_for(alice).get(f"{API}/datasets/products/records/", {"cursor": cursor})

    assert response.status_code == 404


def test_a_cursor_of_the_previous_release_is_a_404_saying_start_again(alice):
    # The previous release paged records by id, its cursors holding one ("p=<id>"): a client
    # paging during the upgrade followed such a `next` link, whose id was read as a key, and
    # got records from the wrong place (keys "1".."39" after "p=40": 5 of the 29 left) or the
    # first page again, with no error.
    imp = make_import(alice, SOURCE)
    make_records(
        imp.dataset,
        (Record(dataset=imp.dataset, key=str(n), data={}, content_hash=n) for n in range(1, 40)),
    )
    cursor = b64encode(f"p={Record.objects.order_by('id')[9].pk}".encode()).decode()

    response = client_for(alice).get(f"{API}/datasets/products/records/", {"cursor": cursor})

    assert response.status_code == 404
    assert response.json()["detail"] == (
        "this cursor is from an earlier release of importbeat, which paged records otherwise: "
        "start again from the first page"
    )


def test_an_owner_with_a_nul_character_is_a_400(alice):
    make_import(alice, SOURCE)

    response = client_for(alice).get(f"{API}/datasets/products/records/", {"owner": "a\x00b"})

    assert response.status_code == 400 and "owner" in response.json()["errors"]


def test_a_page_of_a_dataset_loaded_after_a_large_one_reads_its_own_records_alone(alice):
    # Given a large dataset, then a small one loaded after it (records share one table)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from schedules import services
    from schedules.models import Dataset

    first = Dataset.objects.create(owner=alice, name="first")
    second = Dataset.objects.create(owner=alice, name="second")
    with connection.cursor() as cursor:
        for dataset, count in ((first, 100_000), (second, 20_000)):
            cursor.execute(
                f"INSERT INTO {Record._meta.db_table} (dataset_id, key, data, content_hash,"
                " created_at, updated_at) SELECT %s, 'K-' || n, jsonb_build_object('n', n), n,"
                " now(), now() FROM generate_series(1, %s) n",
                [dataset.pk, count],
            )
        cursor.execute(f"ANALYZE {Record._meta.db_table}")
    services.recount_records([first.pk, second.pk])

    # When a page of the small one is read
    with CaptureQueriesContext(connection) as queries:
        page = client_for(alice).get(f"{API}/datasets/second/records/", {"page_size": 10})
    assert page.status_code == 200 and len(page.json()["results"]) == 10
    [sql] = [q["sql"] for q in queries if "ORDER BY" in q["sql"] and "record" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
        plan = cursor.fetchone()[0][0]["Plan"]

    # Then it reads its own records, not the first's: by id, it walked the table past every
    # record loaded before (222 ms behind 1.5 million, growing with every user's loads)
    def walked(node: dict) -> int:
        own = node.get("Rows Removed by Filter", 0) + node.get("Actual Rows", 0)
        return own + sum(walked(child) for child in node.get("Plans", []))

    assert walked(plan) < 1_000, plan


def test_records_with_long_keys_page_by_short_links(alice):
    # A key may hold 2,048 bytes: in the cursor, percent-encoded then base64, a `next` link of
    # 600 Cyrillic letters was 4,883 characters, which gunicorn refuses (414): paging stopped
    from schedules.models import Dataset

    dataset = Dataset.objects.create(owner=alice, name="catalogue")
    keys = sorted([chr(0x0410 + n) * 600 for n in range(3)] + ["A-1", "B-2"])
    make_records(
        dataset,
        [Record(dataset=dataset, key=k, data={}, content_hash=n) for n, k in enumerate(keys)],
    )
    client = client_for(alice)

    url, seen, links = f"{API}/datasets/catalogue/records/?page_size=1", [], []
    while url:
        page = client.get(url).json()
        seen += [record["key"] for record in page["results"]]
        links += [link for link in (page["next"], page["previous"]) if link]
        url = page["next"]
    back = client.get(page["previous"]).json()["results"]

    assert seen == keys
    assert links and max(len(link) for link in links) < 300, max(map(len, links))
    assert [record["key"] for record in back] == [keys[-2]]


@pytest.mark.parametrize(
    "path", ["/datasets/", "/datasets/products/", "/datasets/products/records/"]
)
@pytest.mark.parametrize("owner", ["", " "])
def test_an_owner_given_no_value_is_a_400_naming_it(alice, path, owner):
    """Regression: `?owner=` left empty was ignored on a dataset's pages (the caller's own
    dataset answered) and listed no dataset at all."""
    make_import(alice, SOURCE)

    response = client_for(alice).get(f"{API}{path}", {"owner": owner})

    assert response.status_code == 400, response.content
    assert response.json()["errors"]["owner"] == [
        "has no value: give a username; or leave the parameter out"
    ]
