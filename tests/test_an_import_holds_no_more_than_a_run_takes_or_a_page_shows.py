"""An import's columns spec and description are bounded when saved (attack hunt): a spec of
22,000 columns, which no run could ever take (a run takes MAX_FILE_COLUMNS, PostgreSQL's 1,600
a table less staging's), was accepted in a 2.4 MB PATCH, and each such edit kept 5 MB in the
import's history for good (a page of the history answer: 12.7 MB after three); a description
had no bound at all. An import saved with a longer description before stays editable."""

from __future__ import annotations

import pytest

from schedules.models import ScheduledImport
from schedules.validation import MAX_DESCRIPTION, MAX_FILE_COLUMNS
from tests.api_support import API, client_for, import_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def bobs(bob):
    client = client_for(bob)
    created = client.post(f"{API}/imports/", import_body(), format="json")
    assert created.status_code == 201, created.content
    return client, f"{API}/imports/{created.json()['id']}/"


def test_a_columns_spec_no_run_could_take_is_a_400_naming_the_limit(bobs):
    client, url = bobs
    spec = [{"name": "sku"}] + [{"name": f"c{n}"} for n in range(MAX_FILE_COLUMNS)]

    answer = client.patch(url, {"columns": spec}, format="json")

    assert answer.status_code == 400, f"{answer.status_code}: a spec of {len(spec)} taken"
    assert answer.json()["errors"]["columns"] == [
        f"lists {len(spec):,} columns; an import takes at most {MAX_FILE_COLUMNS:,} "
        "(PostgreSQL's limit is 1,600 columns a table, and staging uses 5)"
    ]


def test_a_spec_of_as_many_columns_as_a_run_takes_is_saved(bobs):
    client, url = bobs
    spec = [{"name": "sku"}] + [{"name": f"c{n}"} for n in range(MAX_FILE_COLUMNS - 1)]

    assert client.patch(url, {"columns": spec}, format="json").status_code == 200


def test_a_description_past_its_bound_is_a_400(bobs):
    client, url = bobs

    too_long = client.patch(url, {"description": "x" * (MAX_DESCRIPTION + 1)}, format="json")
    at_most = client.patch(url, {"description": "x" * MAX_DESCRIPTION}, format="json")

    assert too_long.status_code == 400
    assert too_long.json()["errors"]["description"] == [
        f"a description is at most {MAX_DESCRIPTION:,} characters long (this one is "
        f"{MAX_DESCRIPTION + 1:,})"
    ]
    assert at_most.status_code == 200


def test_an_import_saved_with_a_longer_description_before_stays_editable(bobs):
    # Given an import whose description was saved longer before the bound
    client, url = bobs
    ScheduledImport.objects.update(description="x" * (MAX_DESCRIPTION * 2))

    # When another field is changed, it is saved; the description is refused only when set
    assert client.patch(url, {"max_retries": 5}, format="json").status_code == 200
    assert (
        client.patch(url, {"description": "y" * (MAX_DESCRIPTION * 2)}, format="json").status_code
        == 400
    )
