"""An unexpected error keeps its traceback on the run, for staff (admin, API detail); the run's
message says so in plain words, without internals (issue 16: `internal error:
ZeroDivisionError('boom')` and, on PostgreSQL 15, SQL in the user's error) and without the
error's class name (`internal error (ZeroDivisionError)`)."""

from unittest import mock

import pytest
from django.db import ProgrammingError

from tasks.runner import INTERNAL_ERROR
from tests.api_support import API, SOURCE, client_for
from tests.factories import make_import
from tests.importer_support import run_now

pytestmark = pytest.mark.django_db


@pytest.fixture
def crashed(alice):
    imp = make_import(alice, SOURCE)
    with mock.patch("tasks.engine.import_run", side_effect=ZeroDivisionError("boom")):
        return run_now(imp)


def test_the_run_fails_in_plain_words_and_keeps_its_traceback(crashed):
    assert crashed.status == "failed"
    assert crashed.error_message == (
        "the run stopped on an unexpected error in importbeat, not in the file; the details "
        "are kept for the operators"
    )
    assert "ZeroDivision" not in crashed.error_message
    assert "ZeroDivisionError: boom" in crashed.error_details["traceback"]
    assert 'File "' in crashed.error_details["traceback"]


def test_a_database_error_names_no_sql_in_the_runs_message(alice):
    imp = make_import(alice, SOURCE)
    error = ProgrammingError("function pg_input_is_valid(text, unknown) does not exist\nLINE 1")
    with mock.patch("tasks.engine.import_run", side_effect=error):
        run = run_now(imp)

    assert run.error_message == INTERNAL_ERROR
    assert "pg_input_is_valid" in run.error_details["traceback"]


def test_staff_read_the_traceback_in_the_api_and_the_owner_does_not(
    crashed, alice, django_user_model
):
    staff = django_user_model.objects.create_user("sam", password="x", is_staff=True)

    as_owner = client_for(alice).get(f"{API}/runs/{crashed.pk}/").json()
    as_staff = client_for(staff).get(f"{API}/runs/{crashed.pk}/").json()

    assert "traceback" not in as_owner["error_details"]
    assert as_owner["error_details"]["attempts"][0]["error"] == crashed.error_message
    assert "ZeroDivisionError: boom" in as_staff["error_details"]["traceback"]


def test_staff_read_the_traceback_in_the_admin(crashed, admin_client):
    html = admin_client.get(f"/admin/schedules/importrun/{crashed.pk}/change/").content.decode()

    assert "ZeroDivisionError: boom" in html and "Traceback (most recent call last)" in html
