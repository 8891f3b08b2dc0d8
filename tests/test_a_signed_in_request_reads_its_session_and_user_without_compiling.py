"""A signed-in browser's request (the dashboard, its `live.json` poll, the admin) reads its
session and its user in statements written once (schedules.web_sessions), with every check
Django makes: an expired or unknown session, an inactive user, a changed password."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore as DjangosSessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from tests.api_support import tables_compiled

pytestmark = pytest.mark.django_db

LIVE = "/dashboard/live.json"


@pytest.fixture
def sam(django_user_model):
    return django_user_model.objects.create_user("sam", password="a long passphrase", is_staff=True)


def signed_in(client, user) -> str:
    assert (
        client.post(
            "/admin/login/", {"username": user.username, "password": "a long passphrase"}
        ).status_code
        == 302
    )
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def test_the_session_and_its_user_are_read_without_compiling_a_queryset(client, sam):
    signed_in(client, sam)
    client.get(LIVE)

    # When the dashboard polls
    with tables_compiled() as compiled:
        response = client.get(LIVE)

    # Then it answers sam, and neither the session nor the user was a compiled query
    assert response.status_code == 200
    assert not {"django_session", "auth_user"} & set(compiled), compiled


def test_a_session_signed_in_before_stays_signed_in(client, sam):
    # Given a session Django's own store and backend wrote, as before this change
    session = DjangosSessionStore()
    session[SESSION_KEY] = str(sam.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = sam.get_session_auth_hash()
    session.create()
    client.cookies[settings.SESSION_COOKIE_NAME] = session.session_key

    # Then it still opens the dashboard
    assert client.get(LIVE).status_code == 200
    assert client.get("/dashboard/").status_code == 200


def test_an_expired_session_is_signed_out(client, sam):
    key = signed_in(client, sam)
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(1))

    assert client.get(LIVE).status_code == 403
    assert client.get("/dashboard/").status_code == 302


def test_an_unknown_session_is_signed_out(client, sam):
    signed_in(client, sam)
    client.cookies[settings.SESSION_COOKIE_NAME] = "x" * 32

    assert client.get(LIVE).status_code == 403


def test_an_inactive_user_is_signed_out(client, sam):
    signed_in(client, sam)
    sam.is_active = False
    sam.save()

    assert client.get(LIVE).status_code == 403


def test_a_changed_password_signs_other_sessions_out(client, sam):
    signed_in(client, sam)
    sam.set_password("another long passphrase")
    sam.save()

    assert client.get(LIVE).status_code == 403


def test_signing_out_ends_the_session(client, sam):
    key = signed_in(client, sam)
    client.post("/admin/logout/")

    assert not Session.objects.filter(session_key=key).exists()
    assert client.get(LIVE).status_code == 403
