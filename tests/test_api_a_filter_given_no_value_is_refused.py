"""Regression (API hunt): a filter given with no value (`?import_id=`, `?since=`, `?late=`,
`?key=`, ...) was no filter at all, and the list answered everything.

A script that built its query from a variable left empty (`?import_id=$ID`, a form field not
filled in) asked for one import's runs and was answered every run of every import, with a
200; `/datasets/{name}/records/?key=` answered every record instead of one. django-filter skips
a filter whose value is empty; only the runs' `?status=` and `?trigger=` refused it. Now every
filter of every list refuses it with a 400 naming the filter and what it takes.
"""

import pytest

from schedules.models import Record
from schedules.rows import MAX_ID
from tests.api_support import API, SOURCE, client_for, make_run
from tests.factories import make_import, make_records

pytestmark = pytest.mark.django_db

IMPORT_STATUSES = "one of: active, paused, cancelled"
RUN_STATUSES = (
    "one of: queued, running, retrying, succeeded, partial, failed, timed_out, skipped, cancelled"
)
YES_NO = "one of: 1, true, yes, 0, false, no"
WHEN = "a date and time (ISO 8601, e.g. 2024-05-01T06:00:00Z)"

# Every filter of every list, and what its 400 says it takes.
EMPTY = [
    ("/runs/", "import_id", f"an id: a whole number from 1 to {MAX_ID}"),
    ("/runs/", "status", RUN_STATUSES),
    ("/runs/", "trigger", "one of: schedule, manual, api, catchup"),
    ("/runs/", "since", WHEN),
    ("/runs/", "until", WHEN),
    ("/imports/{id}/runs/", "status", RUN_STATUSES),
    ("/imports/{id}/runs/", "since", WHEN),
    ("/imports/{id}/runs/", "until", WHEN),
    ("/imports/", "status", IMPORT_STATUSES),
    ("/imports/", "dataset", "a dataset's name"),
    ("/imports/", "search", "words to find in the name, description or source URL"),
    ("/imports/", "last_run_status", RUN_STATUSES),
    ("/imports/", "late", YES_NO),
    ("/imports/", "needs_attention", YES_NO),
    ("/datasets/products/records/", "key", "a record's key"),
    ("/datasets/products/records/", "field", "name:value (e.g. city:Berlin)"),
    ("/datasets/products/export/", "key", "a record's key"),
    ("/datasets/products/export/", "field", "name:value (e.g. city:Berlin)"),
]


@pytest.fixture
def first(alice):
    """alice's two imports, each with a run, and two records in the first one's dataset."""
    first = make_import(alice, SOURCE)
    second = make_import(alice, SOURCE, name="other", dataset="other")
    make_run(first)
    make_run(second)
    make_records(first.dataset, [
        Record(dataset=first.dataset, key=key, data={"sku": key}, content_hash=i)
        for i, key in enumerate(["A-1", "B-2"])
    ])  # fmt: skip
    return first


@pytest.mark.parametrize("value", ["", "  "])
@pytest.mark.parametrize(("path", "name", "takes"), EMPTY)
def test_a_filter_given_no_value_is_refused_naming_what_it_takes(
    alice, first, path, name, takes, value
):
    # When a client sends a filter whose value is empty (or spaces alone)
    response = client_for(alice).get(f"{API}{path.format(id=first.pk)}", {name: value})

    # Then it is a 400 naming the filter and what it takes, not every row of the list
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {
        name: [f"has no value: give {takes}; or leave the parameter out"]
    }


def test_an_empty_value_among_a_repeatable_filters_values_is_refused(alice, first):
    # The form reads a repeatable filter's last value alone: `?field=sku:A-1&field=` listed
    # every record, the first condition dropped with the empty one.
    client = client_for(alice)

    records = client.get(f"{API}/datasets/products/records/?field=sku:A-1&field=")
    runs = client.get(f"{API}/runs/?status=succeeded&status=")

    assert records.status_code == 400 and list(records.json()["errors"]) == ["field"]
    assert runs.status_code == 400 and list(runs.json()["errors"]) == ["status"]


def test_a_filter_left_out_still_lists_everything_and_a_value_filters(alice, first):
    client = client_for(alice)

    every_run = client.get(f"{API}/runs/")
    one_import = client.get(f"{API}/runs/", {"import_id": first.pk})
    one_record = client.get(f"{API}/datasets/products/records/", {"key": "A-1"})

    assert every_run.json()["count"] == 2
    assert [run["import_id"] for run in one_import.json()["results"]] == [first.pk]
    assert [record["key"] for record in one_record.json()["results"]] == ["A-1"]
