"""A run's marks of the cluster's own bookkeeping (parked in its owner's line, a retry or a
first message the broker refused) are not shown to its owner, only to staff, as a traceback.

Their words are in the run's `error_message` while they hold; a mark left on a run cancelled
or skipped meanwhile (`message_not_sent` on a run cancelled while the broker was full) was
shown to its owner in `error_details`, saying something no longer true.
"""

from __future__ import annotations

import pytest

from schedules import services
from tests.api_support import API, client_for, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db

MARKS = {
    services.PARKED_BY: "worker-1",
    services.RETRY_NOT_SENT: True,
    services.MESSAGE_NOT_SENT: "the broker refuses new messages: Redis is full",
    "traceback": "Traceback (most recent call last): ...",
}


def test_an_owner_sees_the_runs_errors_without_the_clusters_marks(alice):
    # Given a run of alice's cancelled with bookkeeping marks left on it, beside its errors
    imp = make_import(alice, "http://127.0.0.1/p.csv")
    rows = [{"line": 2, "column": "id", "value": "x", "reason": "not an integer"}]
    run = make_run(imp, "cancelled", error_details={**MARKS, "rows": rows})

    # When she reads it
    shown = client_for(alice).get(f"{API}/runs/{run.pk}/").json()

    # Then she sees its errors, not the marks
    assert shown["error_details"] == {"rows": rows}


def test_staff_see_the_marks(alice, django_user_model):
    # Given the same run, read by staff
    imp = make_import(alice, "http://127.0.0.1/p.csv")
    run = make_run(imp, "cancelled", error_details=dict(MARKS))
    staff = django_user_model.objects.create_user("ops", is_staff=True)

    # Then they see every mark
    assert client_for(staff).get(f"{API}/runs/{run.pk}/").json()["error_details"] == MARKS
