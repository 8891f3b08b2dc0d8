"""kombu's Redis transport with one redis-py client per channel.

kombu's Redis channel builds a new redis-py client for every publish, acknowledgement and
queue operation (`Channel.conn_or_acquire`). A client is a handle on the channel's connection
pool, which every command borrows a connection from and gives back, so one client serves every
such call the same way; building one fills a table of some 170 response callbacks, 0.13 ms of
CPU here: on every manual trigger's publish (issue 15), and on every task's acknowledgement.
Selected for a redis:// broker by CELERY_BROKER_TRANSPORT (project/settings.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared_client: redis.Redis | None = None
    _shared_client_pool: redis.ConnectionPool | None = None

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


class Transport(kombu_redis.Transport):
    Channel = Channel
