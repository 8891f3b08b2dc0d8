"""`manage.py create_admin`: the first admin of a production installation, from the
environment (compose runs it after `migrate` on every start)."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def create_admin() -> str:
    out = StringIO()
    call_command("create_admin", stdout=out)
    return out.getvalue()


def test_it_creates_a_superuser_from_the_environment(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "ops")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long enough password")
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "ops@example.com")

    output = create_admin()

    admin = get_user_model().objects.get(username="ops")
    assert admin.is_superuser and admin.is_staff and admin.email == "ops@example.com"
    assert admin.check_password("a long enough password")
    assert "Created the admin ops" in output


def test_a_restart_leaves_an_existing_admin_and_its_changed_password_alone(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "ops")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long enough password")
    create_admin()
    admin = get_user_model().objects.get(username="ops")
    admin.set_password("changed in the admin")
    admin.save()

    output = create_admin()

    assert get_user_model().objects.get(username="ops").check_password("changed in the admin")
    assert "exists: left as it is" in output


def test_without_the_variables_it_does_nothing(monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)

    assert "no admin created" in create_admin()
    assert not get_user_model().objects.exists()


def test_a_username_without_a_password_or_with_a_short_one_is_refused(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "ops")
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="DJANGO_SUPERUSER_PASSWORD is required"):
        create_admin()

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "short")
    with pytest.raises(CommandError, match="too short"):
        create_admin()
    assert not get_user_model().objects.exists()


def test_a_second_start_leaves_the_admin_alone_whatever_its_names_form(monkeypatch):
    # Regression (ops hunt): the typed name was looked for, not the stored one: every start
    # after the first died on the duplicate, and compose's stack with it
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "ｏｐｓ")  # stored as "ops"
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long enough password")

    call_command("create_admin", stdout=StringIO())
    out = StringIO()
    call_command("create_admin", stdout=out)  # the next `docker compose up`

    assert get_user_model().objects.count() == 1
    assert "exists: left as it is" in out.getvalue()
