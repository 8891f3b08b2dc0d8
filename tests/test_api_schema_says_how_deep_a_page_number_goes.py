"""Regression: `?page=N` of a list paged by cursor stops at MAX_PAGE_OFFSET rows down (deeper is
a 400), but the OpenAPI schema still described `page` in DRF's words ("A page number within the
paginated result set."): a client generated from it learnt the limit only from the 400.
"""

import pytest
import yaml

from tests.api_support import API, client_for

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/runs/", "/imports/", "/imports/{id}/runs/"])
def test_the_schema_says_how_deep_a_page_by_number_goes(alice, path):
    # given the API's schema
    schema = yaml.safe_load(client_for(alice).get(f"{API}/schema/").content)

    # when its `page` parameter of a list paged by cursor is read
    parameters = schema["paths"][f"/api/v1{path}"]["get"]["parameters"]
    page = next(p for p in parameters if p["name"] == "page")

    # then it names the depth limit, `last`, and the way on
    assert "10,000 rows" in page["description"]
    assert "`last`" in page["description"] and "`next`" in page["description"]
