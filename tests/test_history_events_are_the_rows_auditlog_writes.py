"""A history event (a run triggered, retried or cancelled, a host key accepted) is inserted by
a statement written once (history.record_event, issue 15: compiling auditlog's INSERT was a
sixth of a trigger's CPU), and is the very row auditlog's own `log_create` writes for it: the
admin's and the API's history read it as before."""

import pytest
from auditlog.cid import correlation_id
from auditlog.context import set_extra_data
from auditlog.models import LogEntry

from schedules import history
from tests.api_support import API, SOURCE, client_for, reset_throttle
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def written_by_auditlog(imp, event: str, user, **details) -> LogEntry:
    """What record_event wrote before: auditlog's own API."""
    return LogEntry.objects.log_create(
        imp,
        force_log=True,
        action=LogEntry.Action.ACCESS,
        changes={},
        actor=user if user is not None and user.is_authenticated else None,
        additional_data={"event": event, **details},
    )


def columns(entry: LogEntry) -> dict:
    row = LogEntry.objects.filter(pk=entry.pk).values().get()
    del row["id"], row["timestamp"]
    return row


@pytest.mark.parametrize("who", ["the user named", "the request's user", "nobody"])
def test_an_event_is_the_row_auditlog_writes_for_it(alice, bob, who):
    # Given a request's context as the middleware sets it (bob, an address, a correlation id)
    imp = make_import(alice, SOURCE)
    user = alice if who == "the user named" else None
    request_user = None if who == "nobody" else bob
    context = {"actor": request_user, "remote_addr": "203.0.113.9", "remote_port": None}
    cid = correlation_id.set("trace-17")
    via = history.via.set("api")
    try:
        with set_extra_data(context_data=context):
            # When the same event is written by record_event and by auditlog's own API
            ours = history.record_event(imp, "run triggered", user, run=41, retry_of=40)
            auditlogs = written_by_auditlog(imp, "run triggered", user, run=41, retry_of=40)
    finally:
        history.via.reset(via)
        correlation_id.reset(cid)

    # Then every column but the id and the time is the same, and both read back the same
    assert ours.pk != auditlogs.pk
    assert columns(ours) == columns(auditlogs)
    assert columns(ours)["additional_data"]["via"] == "api"
    expected_actor = {"the user named": alice, "the request's user": bob, "nobody": None}[who]
    assert ours.actor_id == (expected_actor.pk if expected_actor else None)
    read = [{**history.describe(entry), "at": None} for entry in history.entries_for(imp)]
    assert read[0] == read[1]


def test_a_triggers_event_through_the_api_is_the_row_auditlog_writes(alice):
    # Given alice's import
    imp = make_import(alice, SOURCE)
    reset_throttle("manual_run", alice.pk)

    # When she triggers it through the API
    response = client_for(alice).post(f"{API}/imports/{imp.pk}/run", REMOTE_ADDR="198.51.100.4")

    # Then its event is what auditlog writes for that request
    assert response.status_code == 202
    ours = history.entries_for(imp).filter(action=LogEntry.Action.ACCESS).get()
    via = history.via.set("api")
    try:
        with set_extra_data(context_data={"actor": alice, "remote_addr": "198.51.100.4",
                                          "remote_port": None}):  # fmt: skip
            auditlogs = written_by_auditlog(imp, "run triggered", alice, run=response.json()["id"])
    finally:
        history.via.reset(via)
    assert columns(ours) == columns(auditlogs)
    reset_throttle("manual_run", alice.pk)
