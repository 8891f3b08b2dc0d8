"""A retried run whose server repeats the credential in its answer (here its status line's reason
phrase) keeps it out of what Celery logs and stores of the retry: the worker's log line
(`Retry in 1s: ...`) and the retry's error and traceback in the result backend (Flower) showed
the secret, although the run's own message hid it."""

from __future__ import annotations

import pytest

from schedules import services
from tests.conftest import Route
from tests.echo_support import AWKWARD_TEXT, leaks, sent_forms, stored_states, watch_results
from tests.factories import make_import
from tests.reliability import FAST, wait_for_the_end
from tests.sftp_support import TEST_ENCRYPTION_KEY

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.usefixtures("encryption_key"),
]

CREDENTIAL = {"kind": "basic", "username": "feed", "password": AWKWARD_TEXT}


def test_a_retry_whose_server_repeats_the_credential_logs_and_stores_it_hidden(
    alice, csv_server, processes
):
    # Given an import whose server answers 503 with the request's Authorization header as its
    # reason phrase, a worker, and a look at what the result backend stores
    csv_server.routes["/down.csv"] = lambda: Route(
        b"try later", status=503, reason=csv_server.requests[-1][1]["Authorization"]
    )
    imp = make_import(
        alice,
        csv_server.base_url + "/down.csv",
        credential=CREDENTIAL,
        max_retries=1,
        retry_backoff_seconds=1,
        retry_backoff_max_seconds=1,
        alert_after_failures=0,
    )
    stored = watch_results()
    processes.start("worker", IMPORTBEAT_ENCRYPTION_KEY=TEST_ENCRYPTION_KEY, **FAST)

    # When it runs, is retried once and fails
    run = wait_for_the_end(services.enqueue_run(imp, trigger="api", user=alice), processes)

    # Then the run says what the server answered, the secret hidden
    assert run.status == "failed" and run.attempts == 2
    assert run.error_message == "the server answered HTTP 503 Basic [hidden]"
    # ... and so do the worker's log and every state the backend kept of the run's task
    log = "\n".join(path.read_text() for path in processes.log_dir.glob("*.log"))
    assert "retry: Retry in" in log and "HTTP 503 Basic [hidden]" in log
    states = stored_states(stored, run.celery_task_id)
    assert {state["status"] for state in states} >= {"RETRY", "FAILURE"}
    assert leaks([log, states], sent_forms(CREDENTIAL)) == []
