"""Beat on a Redis it cannot use (stopped, or a server posing as it with a certificate no trusted
CA signed) says why in importbeat's words, once, not at every loop, and says when Redis is back.

Before, each loop logged two lines with redis-py's own text ("beat leader lease unreachable:
Error 111 connecting to 127.0.0.1:…. Connection refused.", "beat cannot record its last tick:
Error 1 connecting to … [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: … (_ssl.c:
1006)"): some 2 lines a second in the tests' loop of 1 s, 24 in 12 s of a stopped Redis; and
nothing when it came back (the tls hunt).
"""

from __future__ import annotations

import time

import pytest

from project.devservices import free_port
from tests.conftest import wait_for
from tests.reliability import FAST, redis_server
from tests.tls_support import NEEDS_TLS_REDIS, make_certificates, tls_redis

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

NOT_SIGNED = (
    "the TLS certificate of the server is not signed by a CA trusted here: give the file of "
    "its CA, as ssl_ca_certs in a rediss:// URL or sslrootcert in DATABASE_URL"
)
WAITS = "beat's maintenance jobs wait and /health does not see beat's loop until it is back"
# Loops of 1 s (the tests' BEAT_MAX_LOOP_INTERVAL) watched after the first line: the old beat
# said its two lines at every one of them.
LOOPS = 4


def beats_redis_lines(log: str) -> list[str]:
    """Beat's lines of its Redis (those after the level: `[… WARNING/MainProcess] …`)."""
    said = [line.split("] ", 1)[-1] for line in log.splitlines() if "/MainProcess]" in line]
    return [line for line in said if "Redis" in line or "leader lease" in line or "tick" in line]


def test_beat_on_a_stopped_redis_says_why_once_and_when_it_is_back(processes, tmp_path):
    with redis_server(free_port(), tmp_path) as server:
        # Given beat leading on a Redis of its own
        processes.start("beat", **FAST, REDIS_URL=server.url)
        wait_for(lambda: "beat became the leader" in processes.log_of("beat"), 60,
                 what=processes.logs())  # fmt: skip

        # When that Redis stops for some loops
        server.kill()
        said = f"beat cannot reach Redis at 127.0.0.1:{server.port}: connection refused; {WAITS}"
        wait_for(lambda: said in processes.log_of("beat"), 30, what=processes.logs())
        time.sleep(LOOPS)
        # Then beat said why once, in words
        lines = beats_redis_lines(processes.log_of("beat"))
        assert lines.count(said) == 1, lines
        assert not [line for line in lines if "Error 111" in line or "unreachable" in line], lines

        # And once Redis is back, beat says so, once
        server.start()
        back = f"beat reaches Redis at 127.0.0.1:{server.port} again, after "
        wait_for(lambda: back in processes.log_of("beat"), 30, what=processes.logs())
        time.sleep(2)
        lines = beats_redis_lines(processes.log_of("beat"))
        assert len([line for line in lines if back in line]) == 1, lines
        assert lines.count(said) == 1, lines


@NEEDS_TLS_REDIS
def test_beat_on_a_server_posing_as_its_tls_redis_says_why_in_words_once(processes, tmp_path):
    certificates = make_certificates(tmp_path / "certificates")
    with tls_redis(certificates, "other_ca") as posing:
        # Given beat on a server posing as its TLS Redis (a certificate of its own making)
        url = posing.url(query=f"ssl_ca_certs={certificates.ca}")
        processes.start("beat", **FAST, REDIS_URL=url)

        # When it loops for a while
        said = f"beat cannot reach Redis at 127.0.0.1:{posing.port}: {NOT_SIGNED}; {WAITS}"
        wait_for(lambda: said in processes.log_of("beat"), 60, what=processes.logs())
        time.sleep(LOOPS)

        # Then it said why once, in words: no SSL internals, no class names
        lines = [line for line in beats_redis_lines(processes.log_of("beat")) if "beat" in line]
        assert lines == [said], lines
