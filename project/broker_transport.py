"""kombu's Redis transport with one redis-py client per channel, which gives back to its queue
a message popped as the channel closes, and leaves nothing in the event loop once closed.

kombu's Redis channel builds a new redis-py client for every publish, acknowledgement and
queue operation (`Channel.conn_or_acquire`). A client is a handle on the channel's connection
pool, which every command borrows a connection from and gives back, so one client serves every
such call the same way; building one fills a table of some 170 response callbacks, 0.13 ms of
CPU here: on every manual trigger's publish (issue 15), and on every task's acknowledgement.

A channel closed while its BRPOP waits for an answer reads that answer, and kombu hands the
message Redis popped for it to the consumer being closed. After a lost broker connection Celery
closes its consumer's channels that way (`Connection.collect`), and the message went into an
acknowledgement bookkeeping write on the lost connection, which failed: popped from the queue,
never run, in no unacknowledged list, and no word of it (kombu 5.7 with Celery 5.7; kombu's
check of a BRPOP that got no reply sends the next BRPOP an instant before the consumer
restarts). It goes back to the head of its queue instead, for the consumer that comes next.

kombu records a message as unacknowledged (the copy Redis delivers again if the worker is
lost) on the channel's connection pool, after BRPOP popped it on a connection of its own, and
raised before the worker got the message when that write failed: lost the same way. The
message goes back to its queue on the connection that popped it, and the consumer restarts as
before; if Redis refuses that too (full, it still pops), the worker runs it without its record.

Serves a redis:// or rediss:// broker: project/celery.py names it so in kombu's transports. A
rediss:// broker checks its server's certificate: kombu's own default for a rediss:// URL
without TLS options was to check nothing (common/redis_tls.py).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import redis
from kombu.asynchronous import Hub
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from common import error_words

logger = logging.getLogger(__name__)

# What kombu's transport keeps of the timers it starts in the event loop (register_with_event_loop).
TIMERS = (
    "_restore_messages_tref",
    "_subclient_health_tref",
    "_brpop_health_tref",
    "_reauth_tref",
    "_binding_expiry_tref",
)


class Channel(kombu_redis.Channel):
    _shared_client: redis.Redis | None = None
    _shared_client_pool: redis.ConnectionPool | None = None
    _consumed_without_acks: frozenset[str] = frozenset()

    @contextmanager
    def conn_or_acquire(self, client: redis.Redis | None = None) -> Iterator[redis.Redis]:
        if client:
            yield client
            return
        # The channel drops its pool when its connection is lost; a client of the old pool
        # would keep its dead sockets, so a new pool gets a new client.
        pool = self.pool
        if self._shared_client_pool is not pool:
            self._shared_client, self._shared_client_pool = self._create_client(), pool
        yield self._shared_client

    def close(self) -> None:
        if self._in_poll and not self.closed:
            self._give_back_what_brpop_popped()
        super().close()

    def _give_back_what_brpop_popped(self) -> None:
        """Read the answer of the BRPOP still waiting, and push the message it popped, if any,
        back where BRPOP takes the next one, on the connection that just answered. The answer
        is read raw: its key is the list's own name, global key prefix included."""
        connection, popped = self.client.connection, None
        try:
            popped = connection.read_response()
            if not popped:
                return
            queue = bytes_to_str(popped[0])[len(self.global_keyprefix) :].rsplit(self.sep, 1)[0]
            if queue in self._consumed_without_acks:
                # A reply to a question (a pidbox answer) is acknowledged by no one: delivered as
                # kombu does, nothing written; pushed back, it would stay in Redis for no one.
                self.connection._deliver(loads(bytes_to_str(popped[1])), queue)
                return
            _push_back(connection, *popped)
            logger.info("Gave back task %s to its queue as the broker channel closed",
                        _task_id(popped[1]))  # fmt: skip
        except self._broker_errors:
            connection.disconnect()
            if popped:
                logger.error(
                    "Task %s was taken from its queue as the broker connection was lost and "
                    "could not be given back; reconciliation sends a run's message again",
                    _task_id(popped[1]),
                )
        finally:
            # kombu's close must not read the answer again, and must go on to release the
            # channel whatever happened here.
            self._in_poll = None

    def basic_consume(
        self, queue: str, no_ack: bool, callback: Any, consumer_tag: str, **kwargs: Any
    ) -> Any:
        consumed = super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)
        if no_ack:
            self._consumed_without_acks = self._consumed_without_acks | {queue}
        else:
            # kombu's own callback records the message, then hands it to the consumer.
            self.connection._callbacks[queue] = partial(self._hand_over, queue, callback)
        return consumed

    def _hand_over(self, queue: str, callback: Any, payload: dict) -> Any:
        message = self.Message(payload, channel=self)
        try:
            self.qos.append(message, message.delivery_tag)
        except self._broker_errors as refused:
            if self._given_back(queue, payload, refused):
                raise
            virtual.QoS.append(self.qos, message, message.delivery_tag)
        return callback(message)

    def _given_back(self, queue: str, payload: dict, refused: Exception) -> bool:
        """Push a message whose record as unacknowledged the broker refused back to the head of
        its queue, on the connection whose BRPOP popped it; whether it went back."""
        task, why = _task_id(payload), _words(refused)
        refusals, connection = "the record", self.client.connection
        # A broadcast message was not popped: it has no queue to go back to.
        if queue not in self.active_fanout_queues and connection is not None:
            priority = self._get_message_priority(payload, reverse=False)
            key = self.global_keyprefix + self._q_for_pri(queue, priority)
            try:
                _push_back(connection, key, dumps(payload))
            except self._broker_errors as again:
                connection.disconnect()
                refusals = "the record, nor the message's return to its queue"
                if _words(again) != why:
                    why = f"{why}; then {_words(again)}"
            else:
                logger.warning("Gave back task %s to its queue: the broker did not take its "
                               "record as unacknowledged (%s)", task, why)  # fmt: skip
                return True
        logger.warning(
            "Task %s runs without the broker's record of it, which would deliver it again were "
            "this worker lost: the broker did not take %s (%s)", task, refusals, why,
        )  # fmt: skip
        return False

    @property
    def _broker_errors(self) -> tuple[type[Exception], ...]:
        return (*self.connection.connection_errors, *self.connection.channel_errors)


def _push_back(connection: redis.Connection, key: bytes | str, payload: bytes | str) -> None:
    """To the end of the list BRPOP takes the next message from."""
    connection.send_command("RPUSH", key, payload)
    connection.read_response()


def _words(error: Exception) -> str:
    return error_words.refusal(error) or error_words.log_text(error)


def _task_id(message: dict | bytes) -> str:
    """The Celery task id of a message, as kombu delivers it or as Redis holds it."""
    try:
        payload = message if isinstance(message, dict) else loads(bytes_to_str(message))
        return payload["headers"]["id"]
    except (ValueError, KeyError, TypeError):
        return "(unknown)"


class Transport(kombu_redis.Transport):
    Channel = Channel
    # What this connection added to the event loop's every tick, in `_loop`.
    _ticks: frozenset = frozenset()
    _loop: Hub | None = None

    def __init__(self, client: Any, **kwargs: Any) -> None:
        # kombu gives a rediss:// connection without TLS options {ssl_cert_reqs: CERT_NONE}, and
        # the broker then took any server for Redis, a warning in the log its only word. Its
        # certificate is checked instead, as redis-py's clients check it. The settings' URLs
        # always say their choice (common/redis_tls.py): their ssl_cert_reqs=none comes with
        # ssl_check_hostname=false, which kombu's default lacks.
        if client.transport_cls == "rediss" and client.ssl == {"ssl_cert_reqs": ssl.CERT_NONE}:
            client.ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        super().__init__(client, **kwargs)

    def register_with_event_loop(self, connection: Any, loop: Hub) -> None:
        before = set(loop.on_tick)
        super().register_with_event_loop(connection, loop)
        self._ticks, self._loop = self._ticks | (loop.on_tick - before), loop

    def close_connection(self, connection: Any) -> None:
        # kombu leaves in the event loop the callback it added to every tick, and its timers:
        # a worker's hub kept them for each consumer restart, holding the old connection, the
        # callbacks called at every loop. After 320 restarts (a broker link that drops now and
        # then, for months): 0.25 ms a loop and 7.5 KiB kept per restart, growing with each
        # (tests/bench/bench_consumer_restarts.py).
        super().close_connection(connection)
        if self._loop is not None:
            self._loop.on_tick.difference_update(self._ticks)
            self._ticks, self._loop = frozenset(), None
        for name in TIMERS:
            if timer := getattr(self.cycle, name, None):
                timer.cancel()
