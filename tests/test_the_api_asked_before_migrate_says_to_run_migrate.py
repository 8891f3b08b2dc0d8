"""Web of a new release started before `migrate` (README "Upgrading": the previous release's
database, this release's code) answers the API with a 503 in the words /health and beat say
("the database ... lacks migrations of this release ...: run `python manage.py migrate`
first"), Retry-After 30, and changes nothing: it answered the bare 500 "Internal server
error." of a crash, with a traceback in its log (deploy hunt).

The test database is migrated back to 0031 (0032 added two columns to the imports' table: the
schema the previous release left), web started from its Procfile line on it, then migrated
forward again.
"""

from __future__ import annotations

import io

import pytest
import requests
from django.core.management import call_command
from django.db import connection

from project.devservices import free_port
from schedules.models import ImportRun
from tests.conftest import answers, wait_for
from tests.factories import make_import

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

BEHIND = "0031_import_last_success"


def test_the_api_asked_before_migrate_answers_503_saying_to_run_migrate(alice, processes):
    # Given alice's import and token, and the database of the previous release
    imp = make_import(alice, "https://example.com/p.csv")
    out = io.StringIO()
    call_command("api_token", "alice", stdout=out)
    token = {"Authorization": f"Token {out.getvalue().split()[-1]}"}
    call_command("migrate", "schedules", BEHIND, verbosity=0)
    connection.close()
    try:
        # ... and web of this release started on it
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        processes.start("web", PORT=str(port), WEB_CONCURRENCY="1")
        wait_for(lambda: answers(base + "/api/v1/health"), 60, what="web\n" + processes.logs())

        # When the API is asked to list the imports and to run one
        listed = requests.get(base + "/api/v1/imports/", headers=token, timeout=10)
        ran = requests.post(f"{base}/api/v1/imports/{imp.pk}/run", headers=token, timeout=10)
    finally:
        call_command("migrate", verbosity=0)

    # Then each is a 503 saying to run migrate, not a crash, and nothing was queued
    for answer in (listed, ran):
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "30"
        detail = answer.json()["detail"]
        assert "lacks migrations of this release (schedules.0" in detail, detail
        assert "run `python manage.py migrate` first" in detail, detail
    assert not ImportRun.objects.exists()
    assert "Internal Server Error" not in processes.log_of("web")
