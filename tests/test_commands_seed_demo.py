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


@pytest.mark.parametrize("changed", ["its password changed", "made by api_token --create"])
def test_it_prints_no_password_that_does_not_sign_in(changed):
    # Given a demo user whose password is not the demo's (changed in the admin), or one that
    # `api_token demo --create` made (no password, not staff)
    if changed == "its password changed":
        seed()
        demo = get_user_model().objects.get(username="demo")
        demo.set_password("a-new-password-42")
        demo.save()
    else:
        call_command("api_token", "demo", "--create", stdout=StringIO())

    # When `make run` seeds the demo again
    [line] = [line for line in seed().splitlines() if line.startswith("demo user:")]

    # Then it prints no password that fails (it printed demo / demo-password), and says why
    assert "demo-password" not in line
    assert "its password is not the demo's" in line
    assert ("it is not staff" in line) == (changed == "made by api_token --create")
