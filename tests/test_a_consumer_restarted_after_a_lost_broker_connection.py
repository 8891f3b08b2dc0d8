"""A worker's consumer restarted after a lost broker connection loses no message and leaves
nothing behind (project.broker_transport). Celery then closes the old connection's channels
(`Connection.collect`) and starts a new connection in the same event loop.

- A message that Redis popped for a channel as it closes goes back to the head of its queue,
  for the consumer that comes next. kombu read the answer of the BRPOP still waiting and handed
  the message to the consumer being closed, through a bookkeeping write on the lost connection,
  which failed: popped and never run, in no unacknowledged list, without a word. Seen with a
  real worker whose broker link went down: kombu's check of a BRPOP that got no reply sent the
  next BRPOP an instant before the consumer restarted, and the run queued meanwhile never ran.
- The old connection leaves the event loop. kombu left its callback on every tick and its
  timers: one more of each at every restart, holding the old connection.

Against the suite's Redis, with the channel's connections dropped by the server, as a lost
network drops them."""

from __future__ import annotations

import gc
import uuid
import weakref
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings
from kombu import Connection, Consumer, Producer, Queue
from kombu.asynchronous import Hub

from project.celery import BROKER_TRANSPORT
from tests.conftest import wait_for

TRANSPORT = BROKER_TRANSPORT


@pytest.fixture
def queue() -> Iterator[Queue]:
    named = Queue(f"test-given-back-{uuid.uuid4().hex}")
    yield named
    server().delete(named.name)


def server() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def send(queue: Queue, body: str) -> None:
    with Connection(settings.CELERY_BROKER_URL, transport=TRANSPORT) as connection:
        Producer(connection.default_channel).publish(body, routing_key=queue.name, declare=[queue])


def consuming(connection: Connection, queue: Queue, received: list, **options) -> Consumer:
    """A consumer whose BRPOP was sent, as a worker's event loop sends it at each tick."""
    consumer = Consumer(connection.default_channel, [queue], callbacks=[
        lambda body, message: received.append(body)
    ], **options)  # fmt: skip
    consumer.consume()
    connection.transport.cycle.on_poll_start()
    return consumer


def drop_connections(connection: Connection, keep: redis.Connection | None = None) -> None:
    """The server drops the channel's connections (all but `keep`), as a lost network does."""
    channel = connection.default_channel
    pool = channel.pool
    mine = [channel.client.connection, *pool._available_connections, *pool._in_use_connections]
    for held in {id(c): c for c in mine}.values():
        if held is not keep and held._sock is not None:
            host, port = held._sock.getsockname()[:2]
            server().client_kill(f"{host}:{port}")


def test_a_message_popped_as_a_lost_connection_is_collected_goes_back_to_its_queue(queue):
    # Given a consumer whose BRPOP popped a message whose answer was not read yet
    received: list[str] = []
    connection = Connection(settings.CELERY_BROKER_URL, transport=TRANSPORT)
    send(queue, "the 2 AM import")
    consuming(connection, queue, received)
    wait_for(lambda: server().llen(queue.name) == 0, 30, what="BRPOP to pop the message")

    # When the broker connection is lost (the BRPOP's own had just answered) and Celery
    # collects the connection to start its consumer again
    drop_connections(connection, keep=connection.default_channel.client.connection)
    connection.collect(socket_timeout=5)

    # Then the message is not handed to the consumer being closed, and is back on its queue
    assert received == []
    assert server().llen(queue.name) == 1
    # ... where the next consumer takes it
    with Connection(settings.CELERY_BROKER_URL, transport=TRANSPORT) as again:
        taken: list[str] = []
        consuming(again, queue, taken)
        again.drain_events(timeout=5)
    assert taken == ["the 2 AM import"]


def test_a_reply_popped_as_the_channel_closes_reaches_its_asker(queue):
    # Given a consumer of replies, acknowledged by no one (as a pidbox question's), whose
    # BRPOP popped one whose answer was not read yet
    received: list[str] = []
    connection = Connection(settings.CELERY_BROKER_URL, transport=TRANSPORT)
    send(queue, "pong")
    consuming(connection, queue, received, no_ack=True)
    wait_for(lambda: server().llen(queue.name) == 0, 30, what="BRPOP to pop the reply")

    # When the connection closes
    connection.close()

    # Then the reply reaches its asker, as kombu delivers it, and nothing is left in Redis
    assert received == ["pong"]
    assert server().llen(queue.name) == 0


def test_a_connection_collected_leaves_the_event_loop(queue):
    # Given a worker's event loop, with the consumer of a connection registered in it
    loop = Hub()

    def consumer_in_the_loop() -> Connection:
        connection = Connection(settings.CELERY_BROKER_URL, transport=TRANSPORT)
        consuming(connection, queue, [])
        connection.transport.register_with_event_loop(connection.connection, loop)
        return connection

    first = consumer_in_the_loop()
    ticks, timers = len(loop.on_tick), live_timers(loop)

    # When the connection is lost and collected, and the consumer restarts on a new one,
    # three times
    gone = weakref.ref(first.transport)
    for _ in range(3):
        connection = first if _ == 0 else consumer_in_the_loop()
        drop_connections(connection)
        connection.collect(socket_timeout=5)
        loop.reset()
    del first, connection
    latest = consumer_in_the_loop()

    # Then the loop holds what one connection needs, no more, and the first one is gone
    assert len(loop.on_tick) == ticks
    assert live_timers(loop) == timers
    gc.collect()
    assert gone() is None
    latest.collect()


def live_timers(loop: Hub) -> int:
    # A cancelled timer stays in the queue until its time comes, and is then dropped.
    return sum(not scheduled.entry.canceled for scheduled in loop.timer.queue)
