"""An operator's server whose `DateStyle` for importbeat's database or role is not ISO
(`ALTER DATABASE … SET DateStyle = 'SQL, DMY'`, a European server's habit; 'German',
'Postgres'): psycopg reads timestamps in ISO only, so every query that read one failed with
"can't parse timestamptz with DateStyle 'SQL, DMY'": a worker failed every run it took, the
web answered 500 to any page with a date, beat dispatched nothing. The same for an
`IntervalStyle` other than `postgres` and for `standard_conforming_strings = off`. Each new
connection now pins them where the server's values at login differ (common/postgres.py).
"""

from __future__ import annotations

import datetime

import pytest
import requests
from django.db import connection
from knox.models import AuthToken

from project.devservices import free_port
from schedules.models import ImportRun
from tests.conftest import answers, wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST
from tests.server_settings_support import database_setting

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.processes
def test_a_worker_and_the_web_on_a_server_whose_datestyle_is_sql_run_and_show_imports(
    alice, csv_server, processes
):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), max_retries=0)
    _, token = AuthToken.objects.create(user=alice, expiry=None)
    # Given a server whose sessions of importbeat's database write dates as 'SQL, DMY'
    with database_setting("DateStyle", "SQL, DMY"):
        port = free_port()
        processes.start("worker", **FAST)
        processes.start("web", PORT=str(port), WEB_CONCURRENCY="1")
        base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Token {token}"}
        wait_for(lambda: "ready." in processes.logs(), 60, what="worker\n" + processes.logs())
        wait_for(lambda: answers(f"{base}/admin/login/"), 30, what="web\n" + processes.logs())

        # When alice triggers her import
        queued = requests.post(f"{base}/api/v1/imports/{imp.pk}/run", headers=auth, timeout=30)
        assert queued.status_code == 202, queued.text

        # Then it runs once and succeeds, and the web shows it with its times
        run = wait_for(
            lambda: ImportRun.objects.filter(
                pk=queued.json()["id"], status__in=ImportRun.FINAL_STATUSES
            ).first(),
            60,
            what="the run to end\n" + processes.logs(),
        )
        assert (run.status, run.attempts, run.rows_inserted) == ("succeeded", 1, 3)
        shown = requests.get(f"{base}/api/v1/runs/{run.pk}/", headers=auth, timeout=30)
        assert shown.status_code == 200, shown.text
        assert shown.json()["finished_at"] == run.finished_at.isoformat().replace("+00:00", "Z")
    processes.stop_all()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DateStyle", "German, DMY"),
        ("DateStyle", "Postgres, MDY"),
        ("IntervalStyle", "iso_8601"),
        ("IntervalStyle", "sql_standard"),
    ],
)
def test_a_session_reads_timestamps_and_intervals_whatever_the_servers_styles(name, value):
    # Given a server whose new sessions write dates or intervals in another style
    # When this process opens one and reads a run's times and an interval
    with database_setting(name, value), connection.cursor() as cursor:
        cursor.execute("SELECT now(), interval '1 day 02:03:04'")
        now, interval = cursor.fetchone()

    # Then it reads them
    assert now.tzinfo is not None
    assert interval == datetime.timedelta(days=1, hours=2, minutes=3, seconds=4)


def test_a_backslash_in_a_literal_stays_one_whatever_the_servers_strings():
    # Given a server whose sessions take backslashes in literals as escapes
    # When hand-written SQL has one in a literal (a pattern, say)
    with database_setting("standard_conforming_strings", "off"), connection.cursor() as cursor:
        cursor.execute(r"SELECT '2026-12-07T10:00:00+02:00' ~ '[+-]\d\d:\d\d$'")
        matched = cursor.fetchone()[0]

    # Then it is the pattern written
    assert matched is True
