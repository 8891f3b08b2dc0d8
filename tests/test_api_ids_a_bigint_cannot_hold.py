"""An id no row can have (above a bigint's largest, rows.MAX_ID) is refused the same way at the
same edge wherever a request names one: in a path (404), the `import_id` filter (400), a records
cursor's position (404). None reaches PostgreSQL, where it would fail the statement (a 500). The
edge was written three times (MAX_ID, `2**63 - 1`, `>= 2**63`); it is one constant now."""

import pytest

from schedules.rows import MAX_ID
from tests.api_support import API, SOURCE, client_for
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def test_the_largest_id_is_looked_for_and_the_next_one_is_refused_everywhere(alice):
    # Given an import of alice's and her client
    make_import(alice, SOURCE)
    client = client_for(alice)

    # When each place that reads an id is given the largest a row can have, then one more
    def trigger(n: int) -> int:
        return client.post(f"{API}/imports/{n}/run").status_code

    def runs_of(n: int) -> int:
        return client.get(f"{API}/runs/", {"import_id": n}).status_code

    # Then the largest is looked for (none is there), and the next one refused without a 500
    # (a records cursor holds a key, not an id: tests/test_api_datasets.py)
    assert (trigger(MAX_ID), runs_of(MAX_ID)) == (404, 200)
    assert (trigger(MAX_ID + 1), runs_of(MAX_ID + 1)) == (404, 400)
    assert MAX_ID == 2**63 - 1
