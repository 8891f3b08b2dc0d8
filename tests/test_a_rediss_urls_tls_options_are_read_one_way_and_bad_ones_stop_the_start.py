"""A Redis URL's TLS options are read one way (common.redis_tls), and one that cannot be
honoured stops every process at its start, naming the option, never the password.

`ssl_cert_reqs=CERT_REQUIRED` (Celery's documented form) worked for the broker and failed every
redis-py client at its first lock; `ssl_ca_cert=` (a typo) was ignored by redis-py, handed to
kombu's connection as an unknown argument; a CA file that is not there failed each client at
its first connection; TLS options on a redis:// URL were ignored by some clients and refused by
Celery's result backend.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from kombu import Connection

from common import redis_tls
from project import broker_transport

BASE_DIR = Path(__file__).resolve().parent.parent


def test_a_rediss_url_checks_the_certificate_unless_it_says_none():
    assert redis_tls.options("rediss://:pw@redis.example.com:6380/0") == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED
    }
    assert redis_tls.options("rediss://h/0?ssl_cert_reqs=CERT_NONE") == {
        "ssl_cert_reqs": ssl.CERT_NONE,
        "ssl_check_hostname": False,
    }
    assert redis_tls.options("redis://h:6379/0") == {}


def test_every_spelling_of_ssl_cert_reqs_is_written_the_one_way_every_client_reads(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("(a CA)")
    for said in ("required", "CERT_REQUIRED", "Required"):
        url = f"rediss://:pw@h:6380/0?ssl_cert_reqs={said}&ssl_ca_certs={ca}&socket_timeout=3"
        assert redis_tls.canonical(url) == (
            f"rediss://:pw@h:6380/0?socket_timeout=3&ssl_cert_reqs=required&ssl_ca_certs={ca}"
        )
    assert redis_tls.canonical("rediss://h/0") == "rediss://h/0?ssl_cert_reqs=required"
    assert redis_tls.canonical("redis://h/0") == "redis://h/0"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("rediss://h/0?ssl_cert_reqs=maybe",
         "ssl_cert_reqs=maybe: write required, optional or none"),
        ("rediss://h/0?ssl_ca_cert=/ca.pem", "ssl_ca_cert: no such TLS option of a rediss:// URL"),
        ("rediss://h/0?ssl_ca_certs=/nowhere/ca.pem",
         "ssl_ca_certs=/nowhere/ca.pem: no such file can be read here"),
        ("redis://h/0?ssl_cert_reqs=required",
         "ssl_cert_reqs given on a redis:// URL, which does not speak TLS: write rediss://"),
        ("rediss://h/0?ssl_check_hostname=perhaps",
         "ssl_check_hostname=perhaps: write true or false"),
    ],
)  # fmt: skip
def test_an_option_that_cannot_be_honoured_is_said(url, said):
    with pytest.raises(redis_tls.TlsOptionError) as refused:
        redis_tls.options(url)
    assert str(refused.value).startswith(said)


def test_a_process_given_a_ca_file_that_is_not_there_stops_at_its_start_naming_it():
    # Given a REDIS_URL whose CA file is not on this machine (its password in the URL)
    url = "rediss://:hunter2-secret@redis.example.com:6380/0?ssl_ca_certs=/nowhere/ca.pem"
    env = dict(os.environ, REDIS_URL=url, DJANGO_DEBUG="1")
    env.pop("CELERY_BROKER_URL", None)

    # When a process reads the settings
    done = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=BASE_DIR, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip

    # Then it stops, saying which option of which variable, without the password
    assert done.returncode != 0
    said = "REDIS_URL: ssl_ca_certs=/nowhere/ca.pem: no such file can be read here"
    assert said in done.stderr, done.stderr[-2000:]
    assert "hunter2-secret" not in done.stdout + done.stderr


def test_a_broker_connection_made_without_tls_options_checks_the_certificate():
    # (No TLS Redis here: the connection is made, not opened.) kombu's own default for a
    # rediss:// URL without options was {ssl_cert_reqs: CERT_NONE}: check nothing.
    connection = Connection("rediss://:secret@redis.example.com:6380/0")
    assert isinstance(connection.transport, broker_transport.Transport)
    assert connection.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
