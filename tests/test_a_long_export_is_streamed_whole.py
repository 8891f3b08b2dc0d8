"""A dataset's export that takes longer than gunicorn's worker timeout arrives whole.

The Procfile's sync workers are killed by their arbiter after `--timeout` seconds without a
heartbeat, and a sync worker beats only between requests: an export of two million records
was cut off at 1.4 million after 30 s, logged as a 200 (common/streaming.py). Here the same
Procfile line runs with a 3-second timeout and exports records that take longer than that to
stream.
"""

import json
import sys
import time
import types
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection
from knox.models import AuthToken

from common import streaming
from project.devservices import free_port
from schedules.models import Dataset
from tests.conftest import answers, procfile_command, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

TIMEOUT_SECONDS = 3
# Forty fields: a record of about 2 KB, stored as it is. Sixty were compressed, and the header's
# read of the dataset's fields (schedules.services.known_fields) unpacked 60,000 of them under
# the web's statement limit: past it on a loaded machine (a 503 before the export began).
FIELDS = 40


def make_records(dataset: Dataset, count: int) -> None:
    # Wide records: each costs the export a JSON document of forty fields to read and write.
    document = {f"field_{n:02d}": f"value {n} of a fairly ordinary row" for n in range(FIELDS)}
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO schedules_record (dataset_id, key, data, content_hash, created_at,"
            " updated_at) SELECT %s, 'k' || g, %s::jsonb || jsonb_build_object('key', 'k' || g),"
            " g, now(), now() FROM generate_series(1, %s) g",
            [dataset.pk, json.dumps(document), count],
        )


def test_an_export_longer_than_the_worker_timeout_arrives_whole(alice, processes):
    dataset = Dataset.objects.create(owner=alice, name="wide")
    count = 90_000
    make_records(dataset, count)
    port = free_port()
    processes.start(
        "web",
        PORT=str(port),
        WEB_CONCURRENCY="1",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        GUNICORN_CMD_ARGS=f"--timeout {TIMEOUT_SECONDS}",
    )
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{base}/admin/login/"), 30, what="web\n" + processes.logs())
    _, token = AuthToken.objects.create(user=alice)

    started, lines = time.monotonic(), 0
    with requests.get(
        f"{base}/api/v1/datasets/wide/export",
        headers={"Authorization": f"Token {token}"},
        stream=True,
        timeout=120,
    ) as response:
        assert response.status_code == 200
        # A cut-off chunked body raises here (ChunkedEncodingError): the test fails.
        for chunk in response.iter_content(1 << 16):
            lines += chunk.count(b"\n")
    took = time.monotonic() - started

    assert lines == count + 1  # the header and every record
    # It streamed for longer than the timeout: without the heartbeat the worker was killed.
    assert took > TIMEOUT_SECONDS, f"the export took {took:.1f}s: make it longer"
    assert "WORKER TIMEOUT" not in processes.logs()


def test_outside_gunicorn_a_stream_passes_through_unchanged(monkeypatch):
    monkeypatch.setattr(streaming, "_notify", None)

    assert list(streaming.streamed(iter("abc"))) == ["a", "b", "c"]


def test_a_stream_beats_at_most_once_a_second_after_a_chunk_went_out(monkeypatch):
    beats, clock = [], iter([0.0, 0.4, 1.1, 1.5, 2.2, 2.3])
    monkeypatch.setattr(streaming, "_notify", lambda: beats.append(len(seen)))
    monkeypatch.setattr(streaming.time, "monotonic", lambda: next(clock))
    seen: list[str] = []

    for chunk in streaming.streamed(iter("abcde")):
        seen.append(chunk)

    # Clock 0.0 at the start; after a 0.4, b 1.1 (beat), c 1.5, d 2.2 (beat), e 2.3.
    assert seen == list("abcde") and beats == [2, 4]


def test_a_gunicorn_without_the_hook_says_so_once_at_its_first_long_response(monkeypatch, caplog):
    # Given a gunicorn worker started elsewhere than the project's directory, without `-c`:
    # gunicorn.conf.py was not read, so nothing beats
    monkeypatch.setattr(streaming, "_notify", None)
    monkeypatch.setattr(streaming, "_warned", False)
    monkeypatch.setitem(sys.modules, "gunicorn.arbiter", types.ModuleType("gunicorn.arbiter"))

    # When two long responses go out, then the log says why they will be killed, once
    assert list(streaming.streamed(iter("ab"))) == ["a", "b"]
    streaming.alive()

    said = [r.getMessage() for r in caplog.records if r.name == "importbeat.web"]
    assert len(said) == 1 and "without importbeat's gunicorn.conf.py" in said[0]


def test_the_procfile_starts_gunicorn_where_it_reads_its_config_by_itself():
    # gunicorn reads ./gunicorn.conf.py when it starts without -c: the Procfile's processes
    # start in the project's directory (tests/conftest.py Processes, honcho, the image's WORKDIR)
    from gunicorn.config import Config

    assert Config().settings["config"].default == "./gunicorn.conf.py"
    assert (Path(settings.BASE_DIR) / "gunicorn.conf.py").is_file()
    assert " -c " not in procfile_command("web")
