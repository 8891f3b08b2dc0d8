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


@pytest.mark.parametrize(
    ("username", "said"),
    [("", "is not valid"), ("x" * 200, "at most 150 characters"), ("a\x01b", "is not valid")],
)
def test_a_username_django_would_not_create_is_an_error_without_a_traceback(username, said):
    # An empty or too long name raised with a traceback; one with control characters was made
    with pytest.raises(CommandError, match=said):
        call_command("api_token", username, "--create", stdout=StringIO())


def test_an_inactive_user_gets_no_token_that_would_never_work(django_user_model):
    django_user_model.objects.create_user("ina", password="x", is_active=False)

    with pytest.raises(CommandError, match="'ina' is inactive"):
        call_command("api_token", "ina", stdout=StringIO())


def test_seed_demo_with_a_base_url_the_import_refuses_says_why(db):
    with pytest.raises(CommandError, match="--base-url 'ftp://nowhere': source_url: "):
        call_command("seed_demo", "--base-url", "ftp://nowhere", stdout=StringIO())


def test_a_name_django_stores_otherwise_is_the_user_it_stores(alice):
    # Regression (ops hunt): `api_token ａｌｉｃｅ --create` (full-width letters, as an input
    # method gives them) was a duplicate-key traceback; it is alice, as her sign-in takes it
    out = StringIO()
    call_command("api_token", "ａｌｉｃｅ", "--create", stdout=out)

    assert get_user_model().objects.count() == 1
    assert "created user" not in out.getvalue()


def test_the_created_users_name_is_said_as_it_is_stored():
    # ("created user ﬁle" of a user stored as "file", whom `api_token ﬁle` then did not find)
    out = StringIO()
    call_command("api_token", "ﬁle", "--create", stdout=out)

    stored = get_user_model().objects.get().username
    assert f"created user {stored}" in out.getvalue(), (stored, out.getvalue())
    # and the name the operator typed finds that user again
    again = StringIO()
    call_command("api_token", "ﬁle", stdout=again)
