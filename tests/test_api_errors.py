"""One error shape: every error answers JSON with a `detail`; validation adds `errors`."""

import json

import pytest
from rest_framework.test import APIClient

from tests.api_support import API, SOURCE, client_for
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def test_an_unknown_api_path_is_a_json_404(alice, settings):
    settings.DEBUG = False

    response = client_for(alice).get(f"{API}/nothing-here/")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_a_404_says_what_was_not_found_in_the_products_words(alice):
    client = client_for(alice)

    an_import = client.get(f"{API}/imports/999999/")
    its_runs = client.get(f"{API}/imports/999999/runs/")
    a_dataset = client.get(f"{API}/datasets/nothing/records/")

    assert an_import.status_code == 404
    assert an_import.json() == {"detail": "import 999999 not found"}
    assert its_runs.json() == {"detail": "import 999999 not found"}
    assert client.get(f"{API}/runs/888888/").json() == {"detail": "run 888888 not found"}
    assert a_dataset.json() == {"detail": "dataset 'nothing' not found"}


def test_an_id_beyond_the_integer_range_is_a_404_not_a_500(alice):
    response = client_for(alice).get(f"{API}/imports/{2**70}/")

    assert response.status_code == 404


def test_a_wrong_method_is_a_405_with_a_detail(alice):
    imp = make_import(alice, SOURCE)

    response = client_for(alice).get(f"{API}/imports/{imp.pk}/run")

    assert response.status_code == 405 and response.json()["detail"]


def test_a_body_that_is_not_json_is_a_400_or_415_with_a_detail(alice):
    client = client_for(alice)

    broken = client.generic("POST", f"{API}/imports/", "{not json", "application/json")
    form = client.post(f"{API}/imports/", {"name": "x"}, format="multipart")

    assert broken.status_code == 400 and broken.json()["detail"]
    # ... in the shape of every 400 (it came without `errors`)
    assert broken.json()["errors"] == {}
    assert form.status_code == 415 and form.json()["detail"]


def test_a_401_has_the_shape_and_a_challenge():
    response = APIClient().get(f"{API}/runs/")

    assert response.status_code == 401
    assert set(response.json()) == {"detail"}
    assert response["WWW-Authenticate"].startswith("Token")


def test_a_request_past_djangos_limits_is_refused_in_words_not_a_500(alice, settings):
    # Django answers these 400 itself; the API's own error handler made them 500s
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"username": "a", "password": "x" * 2000})
    big = APIClient().generic("POST", f"{API}/auth/token", body, "application/json")
    fields = client_for(alice).get(
        f"{API}/imports/?" + "&".join("status=active" for _ in range(1100))
    )

    assert big.status_code == 413, big.content
    assert big.json()["detail"] == "the request's body is larger than the 1,000 bytes the API takes"
    assert fields.status_code == 400, fields.content
    assert "more than the 1,000 parameters or fields" in fields.json()["detail"]


@pytest.mark.parametrize("token", [b"\xe9\xe9", b"abc\x00def"])
def test_a_token_of_bytes_no_token_holds_is_a_401(token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=b"Token " + token)

    response = client.get(f"{API}/me")

    assert response.status_code == 401, response.content


def test_a_lone_surrogate_in_a_json_key_or_value_is_a_400(alice):
    # JSON's escapes allow "\ud800", which is no character: a key echoed in the answer could
    # not be written, a column's name reached PostgreSQL (both 500s)
    imp = make_import(alice, SOURCE)
    key = APIClient().generic("POST", f"{API}/auth/token", '{"\\ud800": 1}', "application/json")
    column = client_for(alice).generic(
        "PATCH", f"{API}/imports/{imp.pk}/", '{"columns": [{"name": "\\ud800"}]}',
        "application/json",
    )  # fmt: skip

    for response in (key, column):
        assert response.status_code == 400, response.content
        assert "lone surrogate" in response.json()["detail"]


@pytest.mark.parametrize(
    "path", ["/auth/token/", "/auth/logout/", "/auth/logoutall/", "/health/", "/schema", "/docs"]
)
def test_every_path_takes_a_trailing_slash_or_not(alice, path):
    # These answered 404 with the other spelling: a client posting its login to /auth/token/
    response = client_for(alice).get(API + path)

    assert response.status_code not in (404, 500), response.status_code
