"""Is the broker there, and may its user do what the broker needs? One probe for the worker's
start-up check and for `/api/v1/health`.

A connection of its own that waits at most `timeout` seconds for any answer. The broker's
usual connection waits on a socket without a read timeout (a worker's consumer must), so a
broker that accepts connections and then never answers (a hung server, a firewall that drops
the packets after the handshake, the wrong service on that port) held the health check, and
with it a web worker, for good, and a worker hung at its start instead of saying why.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from redis.exceptions import NoPermissionError, ResponseError

# What the probe writes on a Redis broker, for a few seconds.
WRITE_PROBE_KEY = "importbeat:probe:write"
# The value of the commands the probe has Redis check against its ACL: queued, never run.
NOTHING = "importbeat-probe"


class UserNotAllowed(NoPermissionError):
    """The broker's Redis user may not run a command the broker needs, or not on one of its
    keys or channels (its ACL); the message says which, in words; its cause is Redis's own."""


def probe(app: Any, timeout: float, retries: int = 1, hostname: str | None = None) -> None:
    """Connect to the broker, open a channel and, on Redis, write a key of a few seconds and
    check that its user may run what the broker needs (`users_rights`); raise what the
    transport raised, or UserNotAllowed. `retries` attempts, each bounded by `timeout` seconds
    for the connection and for every answer. `hostname`: a worker's, whose own queue (its
    remote control's) is checked too.

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
            # the broker is there. Whether that user may use kombu's keys is users_rights'.
            with suppress(NoPermissionError):
                channel.client.set(WRITE_PROBE_KEY, "1", px=5000)
            users_rights(channel, broker_commands(channel, _queues(app, hostname)))


def _queues(app: Any, hostname: str | None) -> list[tuple[str, str]]:
    """(queue, exchange) of the queues a worker consumes, and of its remote control's queue."""
    queues = [(queue.name, queue.exchange.name or queue.name) for queue in app.amqp.queues.values()]
    if not queues:
        queues = [(app.conf.task_default_queue, app.conf.task_default_queue)]
    mailbox = app.control.mailbox
    if hostname:
        queues.append((mailbox.get_queue(hostname).name, mailbox.exchange.name))
    return queues


def broker_commands(channel: Any, queues: list[tuple[str, str]]) -> list[tuple[str, ...]]:
    """The commands kombu's Redis channel sends for a worker and a sender, on the keys and the
    channel it sends them on (kombu.transport.redis.Channel: a queue is one list per priority,
    its binding a set, the messages not yet acknowledged a hash, an index and a mutex, the
    workers' remote control a fanout channel)."""
    prefix = channel.global_keyprefix or ""
    commands: list[tuple[str, ...]] = []
    for queue, exchange in queues:
        keys = [prefix + queue] + [
            f"{prefix}{queue}{channel.sep}{step}" for step in channel.priority_steps if step
        ]
        binding = prefix + channel.keyprefix_queue % exchange
        commands += [
            ("BRPOP", *keys, "1"),  # a worker waiting for its messages
            ("LPUSH", keys[0], NOTHING),  # a message sent, a retry, a hand-back
            ("LLEN", keys[0]),  # the queue's length
            ("SADD", binding, NOTHING),  # its binding declared
            ("SMEMBERS", binding),  # a message routed
        ]
    unacked = prefix + channel.unacked_key
    index = prefix + channel.unacked_index_key
    fanout = channel.keyprefix_fanout
    if "{db}" in fanout:
        fanout = fanout.format(db=channel.client.connection_pool.connection_kwargs.get("db", 0))
    control = next((exchange for _q, exchange in queues if exchange.endswith(".pidbox")), None)
    commands += [
        # A message taken and not yet acknowledged, acknowledged, given back at a restart.
        ("HSET", unacked, NOTHING, NOTHING),
        ("ZADD", index, "0", NOTHING),
        ("HDEL", unacked, NOTHING),
        ("ZREM", index, NOTHING),
        ("SET", prefix + channel.unacked_mutex_key, NOTHING, "NX", "PX", "1"),
    ]
    if control:
        # The workers' remote control (ping, inspect: /health asks them).
        commands.append(("PUBLISH", f"{fanout}{control}", NOTHING))
    return commands


def users_rights(channel: Any, commands: list[tuple[str, ...]]) -> None:
    """Raise UserNotAllowed when the broker's user may not run one of `commands`.

    Redis checks each command against its user's ACL as MULTI queues it, and DISCARD drops them
    all: nothing is run, nothing written, no message taken. The probe's own key could not tell
    (an ACL that keeps the user to kombu's keys refuses it), and a user refused BRPOP or its
    queue's key passed the worker's start, said ready, met the refusal at its first wait for a
    message, and restarted its consumer at once, again and again, taking nothing (the tls2
    hunt). Two round trips: MULTI's answer is read before anything is sent after it. A user
    refused MULTI itself (an ACL listing kombu's commands without it) ran every command at
    once: the worker's start and each /health popped a message of each queue with BRPOP,
    pushed the probe's value into the queue, and added it to the queue's binding, where
    kombu's routing then failed every message sent (review2 hunt).
    """
    pool = channel.client.connection_pool
    connection = pool.get_connection()
    refused: tuple[tuple[str, ...], ResponseError] | None = None
    try:
        connection.send_command("MULTI")
        try:
            connection.read_response()  # MULTI's OK: Redis queues what follows
        except NoPermissionError as error:
            refused = (("MULTI",), error)
        else:
            connection.send_packed_command(connection.pack_commands([*commands, ("DISCARD",)]))
            for command in commands:
                try:
                    connection.read_response()  # QUEUED, or the ACL's refusal
                except NoPermissionError as error:
                    refused = refused or (command, error)
            connection.read_response()  # DISCARD's OK
    except BaseException:
        connection.disconnect()  # its answers may be half read
        raise
    finally:
        pool.release(connection)
    if refused is not None:
        (name, *args), error = refused
        raise UserNotAllowed(_words(name, args, str(error))) from error


def _words(name: str, args: list[str], refusal: str) -> str:
    """What the ACL refused, in words: the command, or the key or channel it names."""
    text = refusal.lower()
    if "channel" in text:
        what = f"the channel {args[0]}"
    elif "key" in text:
        what = f"the key {args[0].encode('unicode_escape').decode()} for {name}"
    else:
        what = f"the command {name}"
    return f"does not let its Redis user use {what}, which the broker needs: check its ACL"
