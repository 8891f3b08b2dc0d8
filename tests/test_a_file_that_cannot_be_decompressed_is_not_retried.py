"""A file the server labels compressed (Content-Encoding: gzip) that is not fails its run at
once: the server sends the same broken bytes every time, so a retry can only fail the same way
(it was taken for an interrupted download and retried max_retries times, with backoff, before
failing). A real worker, a local server that always sends the mislabelled file."""

import pytest

from schedules import services
from tasks.fetch_errors import BAD_ENCODING
from tests.factories import make_import
from tests.reliability import FAST, wait_for_the_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_run_of_a_file_labelled_gzip_that_is_not_fails_at_once_without_a_retry(
    alice, csv_server, processes
):
    # Given an import whose server labels a plain CSV as gzip, and that may retry three times
    url = csv_server.serve("/p.csv", "sku\nA-1\n", headers={"Content-Encoding": "gzip"})
    imp = make_import(
        alice, url, max_retries=3, retry_backoff_seconds=1, retry_backoff_max_seconds=1
    )
    processes.start("worker", **FAST)

    # When it runs on a worker
    run = wait_for_the_end(services.enqueue_run(imp, trigger="api", user=alice), processes)

    # Then it failed on its first attempt, in plain words, and the file was asked for once
    assert run.status == "failed", run.error_message
    assert run.attempts == 1, run.error_details.get("attempts")
    assert run.error_message == f"download interrupted: {BAD_ENCODING}"
    assert not any("retry_in" in a for a in run.error_details.get("attempts", []))
    assert csv_server.hits["/p.csv"] == 1
