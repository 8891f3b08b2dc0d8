"""Is the broker there? One probe for the worker's start-up check and for `/api/v1/health`.

A connection of its own that waits at most `timeout` seconds for any answer. The broker's
usual connection waits on a socket without a read timeout (a worker's consumer must), so a
broker that accepts connections and then never answers (a hung server, a firewall that drops
the packets after the handshake, the wrong service on that port) held the health check, and
with it a web worker, for good, and a worker hung at its start instead of saying why.
"""

from __future__ import annotations

from typing import Any

# What the write probe sets on a Redis broker, for a few seconds.
WRITE_PROBE_KEY = "importbeat:health:write"


def probe(app: Any, timeout: float, retries: int = 1, write: bool = False) -> None:
    """Connect to the broker and open a channel; raise what the transport raised. `retries`
    attempts, each bounded by `timeout` seconds for the connection and for every answer.

    `write` also writes a key on a Redis broker: a Redis that is full or a read-only replica
    answers every read and refuses every message. Not at a worker's start: a worker is what
    empties a full queue."""
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
        if write and conn.transport.driver_type == "redis":
            channel.client.set(WRITE_PROBE_KEY, "1", px=5000)
