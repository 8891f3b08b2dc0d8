"""A run's admin page leads with its outcome and error, shows the row errors once (a table, no
JSON dump, no `None`), wraps a long error, and gives durations to the millisecond."""

import pytest

from tests.api_support import SOURCE, make_run
from tests.conftest import BASE_DIR
from tests.factories import make_import

pytestmark = pytest.mark.django_db

ROW_ERRORS = {
    "rows": [
        {"line": 7, "column": "price", "value": "ten", "reason": "not a decimal"},
        {"line": 9, "column": None, "value": None, "reason": "expected 3 fields, found 5"},
    ],
    "attempts": [{"attempt": 1, "error": "connection reset", "at": "2026-11-01T10:00:00+00:00"}],
}


def page(admin_client, run) -> str:
    response = admin_client.get(f"/admin/schedules/importrun/{run.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_page_leads_with_the_outcome_and_its_error(admin_client, alice):
    imp = make_import(alice, SOURCE, timezone="Europe/Berlin")
    run = make_run(imp, "partial", error_message="2 rows failed", error_details=ROW_ERRORS,
                   rows_read=10, rows_inserted=8, rows_failed=2, duration_ms=65)  # fmt: skip

    html = page(admin_client, run)

    outcome = html.index('class="ib-outcome"')
    assert outcome < html.index("2 rows failed") < html.index(">Run</h2>")
    assert html.index("not a decimal") < html.index(">Counts</h2>")
    assert '<span class="ib-badge ib-warn">partial</span> <span>in 65 ms</span>' in html
    assert "10 rows read: 8 inserted, 0 updated, 0 unchanged, 0 deleted, 2 failed" in html
    assert f"Run #{run.pk} (partial)" in html  # the title, not "run 11 of 8"


def test_row_errors_show_once_without_none(admin_client, alice):
    imp = make_import(alice, SOURCE)
    run = make_run(imp, "partial", error_message="2 rows failed", error_details=ROW_ERRORS)

    html = page(admin_client, run)

    assert html.count("not a decimal") == 1
    assert html.count("expected 3 fields, found 5") == 1
    assert "None" not in html.split('class="ib-row-errors"')[1].split("</table>")[0]
    assert '"rows"' not in html  # no JSON dump of error_details
    assert html.count("connection reset") == 1
    assert "2026-11-01 11:00:00 CET" not in html  # the import is in UTC
    assert "2026-11-01 10:00:00 UTC" in html


def test_a_long_error_wraps_instead_of_widening_the_page(admin_client, alice):
    imp = make_import(alice, SOURCE)
    long_error = "cannot reach " + "https://example.com/" + "x" * 600
    run = make_run(imp, "failed", error_message=long_error)

    html = page(admin_client, run)

    assert f'<pre class="ib-error">{long_error}</pre>' in html
    css = (BASE_DIR / "schedules" / "static" / "schedules" / "admin.css").read_text()
    assert "pre.ib-error { white-space: pre-wrap; overflow-wrap: anywhere;" in css


@pytest.mark.parametrize(
    ("milliseconds", "shown"),
    [
        (65, "65 ms"),
        (1234, "1.234 s"),
        (125_310, "2 min 05.310 s"),
        (3_725_310, "1 h 02 min 05.310 s"),
    ],
)
def test_durations_are_shown_to_the_millisecond(admin_client, alice, milliseconds, shown):
    imp = make_import(alice, SOURCE)
    run = make_run(imp, "succeeded", duration_ms=milliseconds)

    assert shown in page(admin_client, run)
    assert shown in admin_client.get("/admin/schedules/importrun/").content.decode()
