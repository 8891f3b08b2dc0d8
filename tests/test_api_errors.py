"""One error shape: every error answers JSON with a `detail`; validation adds `errors`."""

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
    assert form.status_code == 415 and form.json()["detail"]


def test_a_401_has_the_shape_and_a_challenge():
    response = APIClient().get(f"{API}/runs/")

    assert response.status_code == 401
    assert set(response.json()) == {"detail"}
    assert response["WWW-Authenticate"].startswith("Token")
