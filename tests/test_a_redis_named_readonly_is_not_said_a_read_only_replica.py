"""A Redis is said a read-only replica only when it says it is one, not when "readonly" is
in its host name, its socket's path or its ACL user's name.

error_words.refusal() took any "readonly" in an error's text for a read-only replica: a Redis
at `redis-readonly:6379` that was down was said "refuses writes: it is a read-only replica:
point the URL at the primary" (the reconciliation's and the sweep's log lines, the throttles',
a run's "message not sent" words), and so was an ACL user named `readonly` refused a command
(Redis 7.2+ names the user in its NOPERM), where the fix is its ACL (reviewD hunt).
"""

from __future__ import annotations

import pytest
import redis
from redis._parsers import _RESP2Parser

from common import error_words
from project.devservices import free_port
from tests.reliability import redis_server

READ_ONLY = "it is a read-only replica: point the URL at the primary"


def test_a_redis_away_at_a_path_named_readonly_is_said_unreachable(tmp_path):
    # Given a Redis whose socket's path says "readonly", and no server there
    path = tmp_path / "redis-readonly.sock"

    # When a command is sent to it
    with pytest.raises(redis.RedisError) as raised:
        redis.Redis(unix_socket_path=str(path), socket_connect_timeout=1).ping()

    # Then it cannot be reached: it refused nothing
    assert error_words.refusal(raised.value) is None
    assert error_words.redis_words("Redis", raised.value) == (
        "cannot reach Redis: no server listens on that socket"
    )


def test_an_acl_user_named_readonly_refused_a_command_is_said_so():
    # Given Redis 7.2's refusal of a command to its ACL user `readonly`, as redis-py reads it
    error = _RESP2Parser(socket_read_size=65536).parse_error(
        "NOPERM User readonly has no permissions to run the 'set' command"
    )

    # Then its ACL refused it, not a replica
    assert error_words.refusal(error) is None
    assert error_words.redis_words("Redis", error) == (
        "Redis refuses: the Redis user is not allowed to run what importbeat needs: check its ACL"
    )


def test_a_read_only_replica_is_still_said_one(tmp_path):
    # Given a real replica (of a primary it cannot reach)
    with redis_server(free_port(), tmp_path) as server:
        replica = redis.Redis.from_url(server.url)
        replica.replicaof("127.0.0.1", free_port())

        # When it is written to
        with pytest.raises(redis.RedisError) as raised:
            replica.set("importbeat:probe", 1)

    # Then it refuses writes: a read-only replica
    assert error_words.redis_words("Redis", raised.value) == f"Redis refuses writes: {READ_ONLY}"
