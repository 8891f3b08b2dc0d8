"""A message Redis popped for a worker whose record as unacknowledged the broker then refused
is not lost (project.broker_transport).

kombu writes that record (the copy Redis delivers again if the worker is lost) on the channel's
connection pool, after BRPOP popped the message on a connection of its own. When the write
failed, kombu raised before the message reached the worker: popped, never run, in no
unacknowledged list, and no word of it. Celery restarted the consumer, which took the next one.

- The pool cannot connect (a Redis at its maxclients, a NAT that forgot the pool's connection)
  while BRPOP's connection still answers: the message goes back to the head of its queue, on the
  connection that popped it, and the consumer restarts as before.
- Redis is full (its maxmemory, evicting nothing): it refuses the record and the message's
  return alike, while BRPOP still pops. The worker runs the message without its record, saying
  so, rather than drop it.

Each on a Redis of its own, whose limits the test sets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection, Consumer, Producer, Queue

from common import error_words
from project.celery import BROKER_TRANSPORT
from project.devservices import free_port
from tests.conftest import wait_for
from tests.reliability import RedisServer, redis_server

QUEUE = Queue("imports")


@pytest.fixture
def broker(tmp_path) -> Iterator[RedisServer]:
    with redis_server(free_port(), tmp_path) as server:
        yield server


def send(broker: RedisServer, body: str) -> None:
    with Connection(broker.url, transport=BROKER_TRANSPORT) as connection:
        Producer(connection.default_channel).publish(
            body, routing_key=QUEUE.name, declare=[QUEUE], headers={"id": f"task-{body}"}
        )


def consuming(broker: RedisServer, received: list) -> Connection:
    """A worker's consumer whose BRPOP was sent, as its event loop sends it at each tick."""
    connection = Connection(broker.url, transport=BROKER_TRANSPORT)
    Consumer(connection.default_channel, [QUEUE], callbacks=[
        lambda body, message: received.append(body)
    ]).consume()  # fmt: skip
    connection.transport.cycle.on_poll_start()
    return connection


def popped(broker: RedisServer) -> tuple[redis.Redis, Connection, list[str]]:
    """A consumer whose BRPOP popped a message; the answer is not read yet."""
    admin = redis.Redis.from_url(broker.url)
    received: list[str] = []
    connection = consuming(broker, received)
    send(broker, "the 2 AM import")
    wait_for(lambda: admin.llen(QUEUE.name) == 0, 30, what="BRPOP to pop the message")
    return admin, connection, received


def test_a_message_whose_record_the_pool_could_not_write_goes_back_to_its_queue(broker, caplog):
    # Given a consumer whose BRPOP popped a message whose answer is not read yet
    admin, connection, received = popped(broker)
    # ... and a pool that can no longer connect, while BRPOP's connection still answers: the
    # server dropped the pool's connections and takes no new client (its maxclients reached)
    channel = connection.default_channel
    popper = channel.client.connection._sock.getsockname()
    for client in admin.client_list():
        if client["addr"] != "{}:{}".format(*popper) and client["name"] != "admin":
            admin.client_kill_filter(_id=client["id"])
    admin.client_setname("admin")
    admin.config_set("maxclients", len(admin.client_list()))

    # When the consumer reads the message
    with (
        caplog.at_level(logging.INFO, "project.broker_transport"),
        pytest.raises(redis.ConnectionError),
    ):
        connection.drain_events(timeout=10)

    # Then the worker got nothing, and the message is back on its queue, said so
    assert received == []
    assert admin.llen(QUEUE.name) == 1
    assert (
        "Gave back task task-the 2 AM import to its queue: the broker did not take its record as "
        "unacknowledged (max number of clients reached)"
    ) in caplog.text, caplog.text
    # ... where the consumer takes it once the broker takes clients again
    admin.config_set("maxclients", 1000)
    connection.collect()
    again = consuming(broker, received)
    again.drain_events(timeout=5)
    assert received == ["the 2 AM import"]
    again.release()


def test_a_message_popped_as_redis_fills_is_run_without_its_record(broker, caplog):
    # Given a consumer whose BRPOP popped a message whose answer is not read yet
    admin, connection, received = popped(broker)
    # ... and Redis full: at its maxmemory, evicting nothing, it refuses every write
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")

    # When the consumer reads the message
    with caplog.at_level(logging.INFO, "project.broker_transport"):
        connection.drain_events(timeout=10)

    # Then the worker runs it, saying that Redis kept no copy of it, and why
    assert received == ["the 2 AM import"]
    assert (
        "Task task-the 2 AM import runs without the broker's record of it, which would deliver "
        "it again were this worker lost: the broker did not take the record, nor the message's "
        f"return to its queue ({error_words.FULL})"
    ) in caplog.text, caplog.text
    admin.config_set("maxmemory", "0")
    connection.release()
