"""A request body sent chunked (`Transfer-Encoding: chunked`, no Content-Length) is read, up to
the size the API takes (project/chunked_bodies.py).

Regression (API hunt): it was read as no body at all, and the API answered as if the client had
sent nothing.

Go's net/http with a body of unknown length, Node's fetch with a stream, `requests` given a
generator, `curl -H 'Transfer-Encoding: chunked'`, and proxies that stream request bodies all
send chunked bodies; gunicorn (the Procfile's web) decodes them and says so
(`wsgi.input_terminated`), but Django reads CONTENT_LENGTH alone, absent here, as 0 bytes.
A `PATCH` that changed a schedule answered 200 with the import unchanged: the client was told
its change was made, and the import went on running at the old time.
"""

import json

import pytest
import requests
from knox.models import AuthToken

from project.devservices import free_port
from tests.api_support import SOURCE
from tests.conftest import answers, wait_for
from tests.factories import make_import

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_chunked_patch_changes_the_import(alice, processes):
    # Given alice's import running at 02:30 and the Procfile's web process
    imp = make_import(alice, SOURCE, schedule_type="cron", cron_expression="30 2 * * *",
                      interval_seconds=None)  # fmt: skip
    _, token = AuthToken.objects.create(user=alice, expiry=None)
    port = free_port()
    processes.start("web", PORT=str(port), WEB_CONCURRENCY="1")
    base = f"http://127.0.0.1:{port}/api/v1"
    wait_for(lambda: answers(f"{base}/health"), 30, what="the web process")

    # When a client sends its change chunked (a body of unknown length: a generator)
    change = json.dumps({"cron_expression": "0 6 * * *"}).encode()
    response = requests.patch(
        f"{base}/imports/{imp.pk}/",
        data=iter([change]),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        timeout=10,
    )

    # Then the change is made
    imp.refresh_from_db()
    assert response.status_code == 200, response.text
    assert imp.cron_expression == response.json()["cron_expression"] == "0 6 * * *"

    # And a body past the size the API takes is refused in words, chunked too
    too_large = requests.patch(
        f"{base}/imports/{imp.pk}/",
        data=iter([b'{"description": "', b"x" * (3 * 1024 * 1024), b'"}']),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert too_large.status_code == 413, too_large.text
    assert too_large.json()["detail"].startswith("the request's body is larger than the")
