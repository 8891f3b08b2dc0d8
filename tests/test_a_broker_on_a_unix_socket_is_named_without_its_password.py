"""A broker on a unix socket is named by its socket's path, never with the password of its URL.

kombu's way to give a socket broker a password is `redis+socket://:password@/path/redis.sock`,
and it reads such a URL's whole rest as the broker's host name: error_words.server_address
named that broker `redis+socket://:s3cret@/run/redis.sock:6379`, the password with it, in the
reconciliation's and the sweep's log lines, the worker's start, Flower's lines and /health's
words (reviewD hunt). A real redis-py error from a socket nobody listens on.
"""

from __future__ import annotations

import pytest
import redis

from common import error_words


@pytest.mark.parametrize(
    "url",
    [
        "redis+socket://:s3cret@/run/importbeat/redis.sock",
        "redis+socket://imp:s3cret@/run/importbeat/redis.sock?virtual_host=2",
    ],
)
def test_a_socket_broker_is_named_by_its_path_alone(url):
    # Given a broker on a unix socket whose URL holds a password
    # When it is named, Then by its socket's path, without the password
    assert error_words.broker_place(url) == "the broker at /run/importbeat/redis.sock"


def test_a_socket_broker_that_cannot_be_reached_is_logged_without_its_password(tmp_path):
    # Given a broker on a unix socket nobody listens on, its URL holding a password
    path = tmp_path / "redis.sock"
    url = f"redis+socket://:s3cret@{path}"
    with pytest.raises(redis.RedisError) as raised:
        redis.Redis(unix_socket_path=str(path), password="s3cret", socket_connect_timeout=1).ping()

    # When a reader of its queues logs it
    said = error_words.redis_for_the_log(raised.value, url, "the broker")

    # Then it is said in words, where it is, without the password
    assert said == f"cannot reach the broker at {path}: no server listens on that socket"
