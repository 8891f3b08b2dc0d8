"""A query parameter nothing reads is a 400 naming the allowed ones, never silently ignored
(`?last_run_status=` and `?key=` returned everything before they existed)."""

import pytest

from tests.api_support import API, SOURCE, client_for, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        (
            "/imports/",
            "dataset, last_run_status, late, needs_attention, page, page_size, search, status",
        ),
        ("/runs/", "import_id, page, page_size, since, status, trigger, until"),
        ("/imports/{imp}/runs/", "page, page_size, since, status, trigger, until"),
        ("/imports/{imp}/stats/", "days"),
        ("/datasets/products/records/", "cursor, field, key, owner, page_size"),
        ("/datasets/products/export", "field, key, owner"),
        ("/datasets/products/", "owner"),
    ],
)
def test_an_unknown_query_parameter_is_a_400_naming_the_allowed_ones(alice, path, allowed):
    # Given an import of alice
    imp = make_import(alice, SOURCE)

    # When she sends a parameter the endpoint does not take
    response = client_for(alice).get(API + path.format(imp=imp.pk), {"colour": "red"})

    # Then it is a 400 on that parameter, listing the ones it takes
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {
        "colour": [f"unknown query parameter; this endpoint takes: {allowed}"]
    }


NONE = "unknown query parameter; this endpoint takes no query parameters"


@pytest.mark.parametrize(
    ("method", "path", "said"),
    [
        ("post", "/imports/{imp}/run", NONE),
        ("post", "/imports/{imp}/pause", NONE),
        ("post", "/imports/{imp}/resume", NONE),
        ("post", "/imports/{imp}/cancel", NONE),
        ("get", "/imports/{imp}/", NONE),
        ("patch", "/imports/{imp}/", "unknown query parameter; this endpoint takes: dry_run"),
        ("post", "/imports/", "unknown query parameter; this endpoint takes: dry_run"),
        ("post", "/imports/check", NONE),
        (
            "get",
            "/imports/{imp}/history/",
            "unknown query parameter; this endpoint takes: page, page_size",
        ),
        (
            "get",
            "/imports/{imp}/deliveries/",
            "unknown query parameter; this endpoint takes: page, page_size",
        ),
        ("get", "/runs/{run}/", NONE),
        ("post", "/runs/{run}/cancel", NONE),
        ("post", "/runs/{run}/retry", NONE),
        ("get", "/me", NONE),
    ],
)
def test_an_endpoint_on_one_object_names_only_what_it_reads(alice, method, path, said):
    # Given an import of alice's with a failed run
    imp = make_import(alice, SOURCE)
    run = make_run(imp, "failed")

    # When she sends a parameter the endpoint does not take
    url = API + path.format(imp=imp.pk, run=run.pk) + "?colour=red"
    response = getattr(client_for(alice), method)(url, {}, format="json")

    # Then the 400 names what it does take: not the lists' filters and pages it never reads
    # (the trigger's named `page` and `page_size`)
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {"colour": [said]}
    # and nothing was done
    imp.refresh_from_db()
    assert (imp.status, imp.runs.count()) == ("active", 1)


def test_an_action_refuses_parameters_too(alice):
    imp = make_import(alice, SOURCE)

    response = client_for(alice).post(f"{API}/imports/{imp.pk}/pause?force=1")

    assert response.status_code == 400 and "force" in response.json()["errors"]
    imp.refresh_from_db()
    assert imp.status == "active"


def test_known_parameters_still_work(alice):
    imp = make_import(alice, SOURCE)
    make_run(imp, "failed")

    response = client_for(alice).get(f"{API}/runs/", {"status": "failed", "page_size": 5})

    assert response.status_code == 200 and response.json()["count"] == 1
