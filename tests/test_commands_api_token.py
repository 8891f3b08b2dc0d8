"""`manage.py api_token USERNAME [--create] [--staff]` prints a working token as its last line."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def api_token(*args: str) -> str:
    out = StringIO()
    call_command("api_token", *args, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def authenticates(token: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client.get("/api/v1/imports/").status_code == 200


def test_it_prints_a_new_working_token_for_an_existing_user(alice):
    first, second = api_token("alice"), api_token("alice")

    assert first != second
    assert authenticates(first) and authenticates(second)


def test_it_creates_the_user_with_create_and_makes_staff_with_staff():
    token = api_token("carol", "--create", "--staff")

    carol = get_user_model().objects.get(username="carol")
    assert carol.is_staff and not carol.has_usable_password()
    assert authenticates(token)


def test_an_unknown_user_without_create_is_an_error():
    with pytest.raises(CommandError, match="--create"):
        api_token("nobody")
    assert not get_user_model().objects.filter(username="nobody").exists()
