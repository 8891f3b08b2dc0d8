"""A broker channel publishes through one redis-py client (project.broker_transport). kombu's
Redis channel built a client for every publish and acknowledgement: 0.13 ms each, a twentieth
of a manual trigger's CPU profile (issue 15)."""

import ssl
import uuid

import pytest
import redis
from celery import current_app
from kombu import Connection

from project import broker_transport
from schedules import services
from schedules.models import ImportRun
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def clients_built(monkeypatch) -> list[redis.Redis]:
    built: list[redis.Redis] = []
    init = redis.Redis.__init__

    def counted(self, *args, **kwargs):
        built.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counted)
    return built


def queued_runs(owner, count: int) -> list[ImportRun]:
    imp = make_import(owner, "http://127.0.0.1:9/p.csv")
    return [
        ImportRun.objects.create(
            scheduled_import=imp, trigger="api", celery_task_id=str(uuid.uuid4())
        )
        for _ in range(count)
    ]


def queue_length() -> int:
    with current_app.connection_for_write() as connection:
        return connection.default_channel.client.llen("celery")


def test_runs_sent_one_by_one_build_no_redis_client(alice, clients_built):
    # Given a web process that sent a run already (its producer's channel and client exist)
    first, *runs = queued_runs(alice, 4)
    services.send_run(first)
    before = queue_length()
    clients_built.clear()

    # When three more runs are triggered, one message each with its event for Flower
    for run in runs:
        services.send_run(run)

    # Then no client was built for them, and their messages are on the queue
    assert clients_built == []
    assert queue_length() == before + 3
    with current_app.connection_for_write() as connection:
        assert isinstance(connection.default_channel, broker_transport.Channel)


def test_a_channel_whose_pool_was_dropped_gets_a_client_of_the_new_pool(alice):
    with current_app.connection_for_write() as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as client, channel.conn_or_acquire() as again:
            assert client is again and client.connection_pool is channel.pool
        channel._disconnect_pools()  # what kombu does when its connection is lost

        with channel.conn_or_acquire() as fresh:
            assert fresh is not client and fresh.connection_pool is channel.pool


def test_a_tls_broker_is_served_the_same_way_and_checks_the_servers_certificate():
    # (No TLS Redis here: the connection is made, not opened.) kombu's default for the scheme
    # was {ssl_cert_reqs: CERT_NONE}, which took any server for Redis (common/redis_tls.py).
    connection = Connection("rediss://:secret@redis.example.com:6380/0")
    assert isinstance(connection.transport, broker_transport.Transport)
    assert connection.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert connection.as_uri().startswith("rediss://")
