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
