"""Regression (API hunt): `GET /runs/?import_id=1.5` listed the runs of import 1.

`AllRunsFilter.import_id` was a django-filter NumberFilter (a decimal), and the ORM cut the
decimal to the bigint column with int(): `1.5`, `1.9`, `1e0` and ` 1` all meant import 1. A
client that computed an id wrongly (a float, a division) was shown another import's runs, not
told its filter was no import id. An id is now whole, in ASCII digits, from 1 to rows.MAX_ID,
as a page number is (pagination._whole_number); anything else is a 400 in words.
"""

import pytest

from schedules.rows import MAX_ID
from tests.api_support import API, SOURCE, client_for, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db

NO_ID = ["{id}.5", "{id}.9", "{id}e0", "{id}.0", " {id}", "{id} ", "+{id}", "-{id}", "0",
         "{id}\N{SUPERSCRIPT ONE}", "\N{FULLWIDTH DIGIT ONE}", "0x{id}", "1_0",
         "9" * 5000]  # fmt: skip


@pytest.mark.parametrize("value", NO_ID)
def test_an_import_id_that_is_no_whole_number_is_refused(alice, value):
    # Given alice's import with a run
    imp = make_import(alice, SOURCE)
    make_run(imp)
    sent = value.format(id=imp.pk)

    # When a client filters the runs by an import id that is no whole number
    response = client_for(alice).get(f"{API}/runs/", {"import_id": sent})

    # Then it is a 400 on import_id saying what an id is, not the runs of some import
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {
        "import_id": [f"{sent!r} is not an id: a whole number from 1 to {MAX_ID}"]
    }


def test_a_whole_import_id_lists_that_imports_runs(alice):
    imp = make_import(alice, SOURCE)
    other = make_import(alice, SOURCE, name="other", dataset="other")
    make_run(imp)
    make_run(other)
    client = client_for(alice)

    for sent in (str(imp.pk), f"0{imp.pk}"):
        response = client.get(f"{API}/runs/", {"import_id": sent})
        assert response.status_code == 200, response.content
        assert [run["import_id"] for run in response.json()["results"]] == [imp.pk]


def test_the_schema_says_an_import_id_is_a_whole_number_in_the_id_range(alice):
    schema = client_for(alice).get(f"{API}/schema/", {"format": "json"}).json()

    parameters = schema["paths"]["/api/v1/runs/"]["get"]["parameters"]
    import_id = next(p for p in parameters if p["name"] == "import_id")
    assert import_id["schema"] == {
        "type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID,
    }  # fmt: skip
