"""`manage.py seed_demo`: a demo staff user with a token and a demo import, idempotent."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from schedules.models import ScheduledImport

pytestmark = pytest.mark.django_db


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_it_creates_the_demo_user_token_and_import_once():
    # When the demo is seeded twice
    seed("--base-url", "http://127.0.0.1:8000")
    output = seed("--base-url", "http://127.0.0.1:9000")

    # Then there is one staff demo user with one demo import, pointing at the latest URL
    demo = get_user_model().objects.get(username="demo")
    assert demo.is_staff and demo.check_password("demo-password")
    imp = ScheduledImport.objects.get(owner=demo)
    assert imp.source_url == "http://127.0.0.1:9000/demo/products.csv"
    assert imp.periodic_task.enabled and imp.next_run_at

    # And the printed token opens the API on the demo's import
    token = output.split("demo API token:")[1].split()[0]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    listed = client.get("/api/v1/imports/").json()
    assert [i["name"] for i in listed["results"]] == [imp.name]


def test_the_demo_import_runs_hourly_with_a_first_run_queued_at_once():
    # When the demo is seeded (twice: `make run` seeds on every start)
    seed()
    seed()

    # Then it runs every hour, not every minute, and one first run was queued
    imp = ScheduledImport.objects.get(name="Demo products")
    assert (imp.schedule_type, imp.interval_seconds) == ("interval", 3600)
    assert imp.schedule_description == "Every hour"
    assert [(r.trigger, r.status) for r in imp.runs.all()] == [("manual", "queued")]


def test_a_demo_seeded_every_minute_by_an_earlier_version_moves_to_hourly():
    seed()
    imp = ScheduledImport.objects.get(name="Demo products")
    ScheduledImport.objects.filter(pk=imp.pk).update(interval_seconds=60)

    seed()

    imp.refresh_from_db()
    assert imp.interval_seconds == 3600
    assert imp.periodic_task.interval.every == 3600


def demo_line() -> str:
    [line] = [line for line in seed().splitlines() if line.startswith("demo user:")]
    return line


def test_a_demo_whose_password_was_changed_is_printed_with_no_password_nor_advice():
    # Given a demo user whose password was changed on purpose (in the admin)
    seed()
    demo = get_user_model().objects.get(username="demo")
    demo.set_password("a-new-password-42")
    demo.save()

    # When `make run` seeds the demo again
    line = demo_line()

    # Then it prints no password that fails (it printed demo / demo-password), and no advice
    # to set one: followed, the same advice came back at every start (review1 bug 4)
    assert "demo-password" not in line
    assert "its password was changed" in line
    assert "changepassword" not in line


def test_a_demo_that_is_not_staff_is_told_what_lets_it_sign_in(client):
    # Regression (review1 bug 4): a `demo` that `api_token demo --create` made (not staff, no
    # password) was told to run changepassword, after which the admin still refused it
    # Given such a demo user
    call_command("api_token", "demo", "--create", stdout=StringIO())

    # When `make run` seeds the demo
    line = demo_line()

    # Then it says why it cannot sign in and what lets it
    assert "demo-password" not in line
    assert "it is not staff, so it cannot sign in to the admin" in line
    assert '"Staff status" and "Superuser status"' in line
    assert "sets its password there" in line
    assert "changepassword" not in line

    # And once that is done, the demo signs in to the admin, and the advice is gone
    demo = get_user_model().objects.get(username="demo")
    demo.is_staff = demo.is_superuser = True
    demo.set_password("chosen-pw-42")
    demo.save()
    assert "its password was changed" in demo_line()
    admin = client.post(
        "/admin/login/?next=/admin/", {"username": "demo", "password": "chosen-pw-42"}, follow=True
    )
    assert b'id="login-form"' not in admin.content


def test_a_deactivated_demo_is_told_to_be_activated():
    seed()
    get_user_model().objects.filter(username="demo").update(is_active=False)

    line = demo_line()

    assert "demo-password" not in line
    assert "it is deactivated, so it cannot sign in to the admin" in line
    assert '"Active"' in line and "changepassword" not in line
    assert "sets its password there" not in line
