"""`GET /imports/{id}/stats/?days=N`: totals per status, success rate, durations, rows, days."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from tests.api_support import API, SOURCE, client_for, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_stats_count_statuses_durations_rows_and_days(alice):
    # Given runs over the last days (and one too old to count)
    imp = make_import(alice, SOURCE)
    with time_machine.travel(NOW, tick=False):
        for day, status, duration in [
            (0, "succeeded", 1000), (0, "succeeded", 2000), (1, "partial", 3000),
            (1, "failed", 4000), (2, "skipped", 1), (10, "succeeded", 9000),
        ]:  # fmt: skip
            make_run(
                imp, status, queued_at=NOW - timedelta(days=day), duration_ms=duration,
                rows_read=10, rows_inserted=7, rows_failed=1,
            )  # fmt: skip

        # When alice asks for the last 3 days
        response = client_for(alice).get(f"{API}/imports/{imp.pk}/stats/", {"days": 3})

    # Then everything is counted over those 3 days only
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["days"] == 3 and body["total"] == 5
    assert body["by_status"]["succeeded"] == 2 and body["by_status"]["partial"] == 1
    assert body["by_status"]["failed"] == 1 and body["by_status"]["skipped"] == 1
    assert body["by_status"]["timed_out"] == 0
    assert body["success_rate"] == 0.5  # 2 of the 4 runs that did work; partial is not success
    assert body["success_or_partial_rate"] == 0.75
    assert body["duration_ms"]["avg"] == 2500.0  # skipped runs take no time: not counted
    assert body["duration_ms"]["p95"] == pytest.approx(3850.0)
    assert body["rows"]["read"] == 50 and body["rows"]["inserted"] == 35
    assert [d["date"] for d in body["daily"]] == ["2026-11-18", "2026-11-19", "2026-11-20"]
    assert [d["total"] for d in body["daily"]] == [1, 2, 2]
    assert body["daily"][2]["succeeded"] == 2 and body["daily"][1]["failed"] == 1


def test_stats_default_to_30_days_and_answer_for_an_import_without_runs(alice):
    imp = make_import(alice, SOURCE)

    body = client_for(alice).get(f"{API}/imports/{imp.pk}/stats/").json()

    assert body["days"] == 30 and len(body["daily"]) == 30
    assert body["total"] == 0 and body["success_rate"] is None
    assert body["duration_ms"] == {"avg": None, "p95": None}


@pytest.mark.parametrize("days", ["0", "-1", "1000", "many"])
def test_a_bad_number_of_days_is_a_400_naming_it(alice, days):
    imp = make_import(alice, SOURCE)

    response = client_for(alice).get(f"{API}/imports/{imp.pk}/stats/", {"days": days})

    assert response.status_code == 400
    assert "days" in response.json()["errors"]
