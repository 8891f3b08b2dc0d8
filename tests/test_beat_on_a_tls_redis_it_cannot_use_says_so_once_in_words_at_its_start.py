"""Beat started on a rediss:// REDIS_URL it cannot use (a server posing as it, with a certificate
no trusted CA signed) says why once, in words: its loop's line. A worker whose results' Redis
alone does not answer says that once, in words, and starts.

Before (says hunt), beat's start said it three times: its loop's line, the start note of a
Redis that may evict keys (project.worker_checks.say_if_redis_may_evict), which said every
unreachable server too, and the health module's log line under it, with redis-py's own text
("ConnectionError: Error 1 connecting to 127.0.0.1:…. [SSL: CERTIFICATE_VERIFY_FAILED]
certificate verify failed: unable to get local issuer certificate (_ssl.c:1006).").
"""

from __future__ import annotations

import time

import pytest

from common.error_words import CLASS_NAME
from tests.conftest import wait_for
from tests.reliability import FAST
from tests.tls_support import NEEDS_TLS_REDIS, make_certificates, tls_redis

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

NOT_SIGNED = "the TLS certificate of the server is not signed by a CA trusted here"


def said(log: str) -> list[str]:
    """The process's log lines (after their level: `[… WARNING/MainProcess] …`)."""
    return [line.split("] ", 1)[-1] for line in log.splitlines() if "/MainProcess]" in line]


@NEEDS_TLS_REDIS
def test_beat_on_a_tls_redis_it_cannot_use_says_why_once_in_words(processes, tmp_path):
    certificates = make_certificates(tmp_path / "certificates")
    with tls_redis(certificates, "other_ca") as posing:
        # Given beat whose REDIS_URL (and results) is a server posing as its TLS Redis
        url = posing.url(query=f"ssl_ca_certs={certificates.ca}")
        processes.start("beat", **FAST, REDIS_URL=url, CELERY_RESULT_BACKEND=url)

        # When it starts and loops a few times
        wait_for(lambda: "beat cannot reach Redis" in processes.log_of("beat"), 60,
                 what=processes.logs())  # fmt: skip
        time.sleep(4)
        lines = said(processes.log_of("beat"))

    # Then one line says why, in words: no SSL internals, no class names
    assert [line for line in lines if NOT_SIGNED in line] == [
        f"beat cannot reach Redis at 127.0.0.1:{posing.port}: {NOT_SIGNED}: give the file of "
        "its CA, as ssl_ca_certs in a rediss:// URL or sslrootcert in DATABASE_URL; beat's "
        "maintenance jobs wait and /health does not see beat's loop until it is back"
    ], lines
    log = processes.log_of("beat")
    assert "SSL" not in log and "_ssl.c" not in log and "Error 1 " not in log, log
    assert not [line for line in lines if "Redis" in line and CLASS_NAME.search(line)], lines


def test_a_worker_whose_results_redis_does_not_answer_says_so_once_in_words(
    processes, refused_port
):
    # Given a worker whose results go to a Redis that does not answer (its broker and REDIS_URL
    # do)
    port = refused_port
    worker = processes.start("worker", **FAST, CELERY_RESULT_BACKEND=f"redis://127.0.0.1:{port}/0")

    # When it starts
    wait_for(lambda: "ready." in processes.log_of("worker") or worker.poll() is not None, 60,
             what=processes.logs())  # fmt: skip
    log = processes.log_of("worker")

    # Then it says once, in words, that the results' Redis cannot be reached (its start notes
    # come before Celery's log format: `… WARNING importbeat.worker …`), and starts
    unreached = [line for line in log.splitlines() if f"127.0.0.1:{port}" in line]
    assert [
        line.split("importbeat.worker ", 1)[-1] for line in unreached if "results:" not in line
    ] == [f"cannot reach Redis at 127.0.0.1:{port} (CELERY_RESULT_BACKEND): connection refused"], (
        log
    )
    assert "Error 111" not in log and "ConnectionError" not in log, log
    assert "ready." in log
