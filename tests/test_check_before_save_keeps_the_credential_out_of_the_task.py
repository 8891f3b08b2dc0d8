"""A check before save keeps the import's credential out of its task: the broker's message, the
arguments Flower lists and the result the backend stores hold neither the credential nor its
ciphertext; the fields wait in Redis under a random key the worker takes once, and a key gone
by then is a plain answer (an encrypted credential in the task's arguments was a secret at rest
in the broker and in Flower)."""

from __future__ import annotations

import base64
import json
import time

import pytest
import redis
import requests
from celery.signals import before_task_publish
from django.conf import settings

from common.redis_client import client
from project.celery import app
from schedules import unsaved_checks
from schedules.models import ScheduledImport
from schedules.source_check import check_unsaved
from tests.api_support import API, client_for
from tests.conftest import Route, wait_for
from tests.echo_support import AWKWARD_TEXT, echo, sent_forms
from tests.echo_support import leaks as leaks_in
from tests.factories import PRODUCTS_CSV
from tests.reliability import start_flower
from tests.sftp_support import TEST_ENCRYPTION_KEY

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.usefixtures("encryption_key"),
]

AUTH = ("ops", "s3cret-flower")
TOKEN = "bearer-token-of-a-check"
HEADER_VALUE = "header-secret-of-a-check"
# Every Fernet token starts so (its version byte and the high bytes of its timestamp).
CIPHERTEXT = "gAAAAA"
SECRETS = (TOKEN, HEADER_VALUE, CIPHERTEXT)
EXPIRED = "the check expired before a worker took it; try again"


def body(url: str, credential: dict) -> dict:
    return {
        "name": "checked", "source_url": url, "dataset": "checked", "key_column": "sku",
        "schedule_type": "interval", "interval_seconds": 3600, "credential": credential,
    }  # fmt: skip


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def test_a_checks_task_carries_a_key_and_its_answer_no_credential(alice, csv_server, processes):
    # Given a worker, Flower, and a look at what the API publishes and the backend stores
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    # A server that writes the request's key into the file
    csv_server.routes["/echo.csv"] = lambda: Route(
        f"sku,key\nA-1,{csv_server.requests[-1][1].get('X-Api-Key')}\n".encode()
    )
    processes.start("worker", IMPORTBEAT_ENCRYPTION_KEY=TEST_ENCRYPTION_KEY)
    flower = start_flower(processes, AUTH)
    published: list[dict] = []

    def keep(body, headers, **_):
        if headers["task"] == "importbeat.check_source_fields":
            published.append({"args": body[0], "kwargs": body[1], "headers": headers})

    wait_for(lambda: app.control.ping(timeout=0.5), 60, what="the worker\n" + processes.logs())
    before_task_publish.connect(keep, weak=False)
    stored = redis.Redis.from_url(settings.CELERY_RESULT_BACKEND).pubsub()
    # The Redis result backend publishes each result on its key as it stores it.
    stored.psubscribe("celery-task-meta-*")
    api = client_for(alice)
    bearer = body(url, {"kind": "bearer", "token": TOKEN})
    header = body(
        csv_server.base_url + "/echo.csv",
        {"kind": "header", "name": "X-Api-Key", "value": HEADER_VALUE},
    )
    try:
        # When alice checks a source with a bearer token, and one with a key in a header that
        # its server repeats in the file
        good = api.post(f"{API}/imports/check", bearer, format="json").json()
        echoed = api.post(f"{API}/imports/check", header, format="json").json()
    finally:
        before_task_publish.disconnect(keep)

    # Then the checks answered as a run would find the source
    assert good["ok"] and good["rows"][0] == ["A-1", "Anvil", "10.50"], good
    assert echoed["rows"] == [["A-1", "[hidden]"]], echoed
    assert leaks(json.dumps([good, echoed])) == []
    # ... each task's message carries one random key, already taken from Redis
    assert len(published) == 2 and {len(p["args"]) for p in published} == {1}
    for message in published:
        (key,) = message["args"]
        assert message["kwargs"] == {} and len(key) >= 40
        assert leaks(json.dumps(message, default=str)) == []
        assert not client().exists(unsaved_checks.PREFIX + key)
    # ... what Flower shows of the tasks (arguments, result, error) names no secret
    ids = [p["headers"]["id"] for p in published]
    shown = [wait_for(lambda i=i: _finished_in_flower(flower, i), 30) for i in ids]
    assert all(task["args"] for task in shown)
    assert leaks(json.dumps(shown)) == []
    # ... nor does the result the backend stored
    results = _stored_results(stored, ids)
    assert "[hidden]" in results[ids[1]]
    assert leaks(json.dumps(results)) == []


def test_a_checks_stored_answer_hides_a_basic_credential_in_every_form_its_server_repeats(
    alice, csv_server, processes
):
    # Given a worker, a look at what the backend stores, and a server that writes the
    # request's credential into the file: the basic pair as sent (base64), and the password
    # raw, percent-encoded and JSON-escaped
    credential = {"kind": "basic", "username": "feed", "password": AWKWARD_TEXT}
    url = echo(csv_server, "/echo.csv")
    processes.start("worker", IMPORTBEAT_ENCRYPTION_KEY=TEST_ENCRYPTION_KEY)
    wait_for(lambda: app.control.ping(timeout=0.5), 60, what="the worker\n" + processes.logs())
    ids: list[str] = []

    def keep(headers, **_):
        ids.append(headers["id"])

    before_task_publish.connect(keep, weak=False)
    stored = redis.Redis.from_url(settings.CELERY_RESULT_BACKEND).pubsub()
    stored.psubscribe("celery-task-meta-*")
    try:
        # When alice checks the source
        answer = (
            client_for(alice)
            .post(f"{API}/imports/check", body(url, credential), format="json")
            .json()
        )
    finally:
        before_task_publish.disconnect(keep)

    # Then the answer, and the result the backend keeps for Flower, show none of them
    assert answer["rows"][0][:4] == ["A-1", "Basic [hidden]", "", "feed:[hidden]"], answer
    (result,) = _stored_results(stored, ids).values()
    assert leaks_in([answer, json.loads(result)], sent_forms(credential)) == []


def test_an_unsaved_check_no_worker_took_in_time_answers_that_it_expired(alice, processes):
    # Given an unsaved import with a credential, checked while no worker runs
    imp = ScheduledImport(owner=alice, source_url="https://example.com/p.csv", key_column="sku")
    imp.credential = {"kind": "bearer", "token": TOKEN}
    imp.seal_credential()
    nobody = check_unsaved(imp, wait=0.5)
    assert "no worker answered" in nobody.problems[0]

    # When the message waits in the broker past its key's expiry
    broker = redis.Redis.from_url(app.conf.broker_url)
    (raw,) = broker.lrange(app.conf.task_default_queue, 0, -1)
    message = json.loads(raw)
    (key,), kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert kwargs == {} and leaks(raw.decode() + base64.b64decode(message["body"]).decode()) == []
    assert 0 < client().ttl(unsaved_checks.PREFIX + key) <= 1 + unsaved_checks.MARGIN_SECONDS
    wait_for(lambda: not client().exists(unsaved_checks.PREFIX + key), 30, what="the expiry")

    # Then a worker taking it answers in plain words
    processes.start("worker", IMPORTBEAT_ENCRYPTION_KEY=TEST_ENCRYPTION_KEY)
    answer = app.AsyncResult(message["headers"]["id"]).get(timeout=60)
    assert answer["ok"] is False and answer["problems"] == [EXPIRED]


def test_the_fields_of_an_unsaved_check_can_be_taken_once():
    key = unsaved_checks.put({"source_url": "https://example.com/p.csv"}, wait=5)

    assert unsaved_checks.take(key) == {"source_url": "https://example.com/p.csv"}
    assert unsaved_checks.take(key) is None
    # A message from before the fields moved to Redis carries them itself: not read
    assert unsaved_checks.take({"source_url": "https://example.com/p.csv"}) is None


def _finished_in_flower(base: str, task_id: str) -> dict | None:
    answer = requests.get(f"{base}/api/task/info/{task_id}", auth=AUTH, timeout=5)
    if answer.status_code == 200 and answer.json().get("state") in ("SUCCESS", "FAILURE"):
        return answer.json()
    return None


def _stored_results(pubsub, ids: list[str], timeout: float = 10) -> dict[str, str]:
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while set(ids) - set(found) and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "pmessage":
            task_id = message["channel"].decode().removeprefix("celery-task-meta-")
            if task_id in ids:
                found[task_id] = message["data"].decode()
    pubsub.close()
    assert set(found) == set(ids), "the backend published no result of the checks"
    return found


def test_an_unsaved_check_says_the_queue_is_unavailable_when_redis_does_not_answer(alice, settings):
    from project.devservices import free_port

    imp = ScheduledImport(owner=alice, source_url="https://example.com/p.csv", key_column="sku")
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    client.cache_clear()
    try:
        answer = check_unsaved(imp, wait=0.5)
    finally:
        client.cache_clear()

    assert answer.ok is False and answer.problems == ["the task queue is unavailable; try again"]
