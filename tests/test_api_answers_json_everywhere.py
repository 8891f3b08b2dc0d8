"""Every answer under /api/ is JSON, also with DEBUG on: an unknown path is the API's 404 and a
crash is the API's 500 (issue 16: both were Django's HTML pages in development)."""

from unittest import mock

import pytest

from tests.api_support import API, SOURCE, client_for
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize("path", ["/api/v1/nothing-here/", "/api/v2/imports/", "/api/"])
def test_an_unknown_path_under_api_is_a_json_404(alice, settings, debug, path):
    settings.DEBUG = debug

    response = client_for(alice).get(path)

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize("debug", [True, False])
def test_a_crash_in_a_view_is_a_json_500_without_internals(alice, settings, debug):
    settings.DEBUG = debug
    imp = make_import(alice, SOURCE)

    with mock.patch("schedules.stats.import_stats", side_effect=ZeroDivisionError("secret")):
        response = client_for(alice).get(f"{API}/imports/{imp.pk}/stats/")

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error."}


def test_pages_outside_the_api_keep_djangos_html_404(client, settings):
    settings.DEBUG = False

    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert "json" not in response["Content-Type"]


@pytest.mark.parametrize("path", ["/docs/", "/schema/", "/imports/", "/health"])
def test_options_on_a_page_of_the_api_is_no_server_error(alice, path):
    # OPTIONS /docs/ was a 500: DRF rendered its metadata with the page's HTML renderer
    response = client_for(alice).options(f"{API}{path}")

    assert response.status_code in (200, 405), response.content[:200]
    assert response.status_code != 405 or "GET" in response["Allow"]
