"""Is the broker there? One probe for the worker's start-up check and for `/api/v1/health`.

A connection of its own that waits at most `timeout` seconds for any answer. The broker's
usual connection waits on a socket without a read timeout (a worker's consumer must), so a
broker that accepts connections and then never answers (a hung server, a firewall that drops
the packets after the handshake, the wrong service on that port) held the health check, and
with it a web worker, for good, and a worker hung at its start instead of saying why.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from redis.exceptions import NoPermissionError

# What the probe writes on a Redis broker, for a few seconds.
WRITE_PROBE_KEY = "importbeat:probe:write"


def probe(app: Any, timeout: float, retries: int = 1) -> None:
    """Connect to the broker, open a channel and, on Redis, write a key of a few seconds; raise
    what the transport raised. `retries` attempts, each bounded by `timeout` seconds for the
    connection and for every answer.

    The write: a Redis that is full (at its maxmemory, evicting nothing) or a read-only replica
    answers every read and refuses every run's message, and a worker's start (kombu's
    `restore_visible` takes a lock in Redis) with a traceback."""
    bounded = {
        # Redis (kombu's redis transport reads these from its transport options).
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # AMQP (py-amqp's connection takes these).
        "read_timeout": timeout,
        "write_timeout": timeout,
    }
    with app.connection_for_write(connect_timeout=timeout, transport_options=bounded) as conn:
        conn.ensure_connection(
            max_retries=retries, interval_start=0.5, interval_step=0.5, timeout=timeout
        )
        channel = conn.default_channel  # opening the channel is what proves the broker
        if conn.transport.driver_type == "redis":
            # An ACL that keeps the broker's user to kombu's own keys refuses the probe's key:
            # Redis checks the ACL before its memory, so that refusal says nothing of room, and
            # the broker is there.
            with suppress(NoPermissionError):
                channel.client.set(WRITE_PROBE_KEY, "1", px=5000)
