"""A worker whose connection to the broker the network stopped carrying (a firewall or a NAT
that forgot it, a Redis host replaced while the link was down) notices, reconnects and takes
the runs queued since. Before, it waited for ever on a connection that would never answer: up
and answering nothing, it took no run again until it was restarted, and nothing said so.

The worker reaches its broker over a link of the test's own (tests.reliability.Link: a network
namespace and a veth pair; root), unplugged while the proxy at its far end forgets the worker's
connections: the reset the proxy sends is lost with the link, as it would be."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from schedules import services
from schedules.api.health import check_workers
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, RedisProxy, link, proxied, wait_for_the_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

NOTICED_WITHIN_SECONDS = 75
# Past the 11 s in which the keepalives give a silent connection up (BROKER_KEEPALIVE_OPTIONS):
# the worker's connections time out while the link is down, as when no reset comes at all.
UNPLUGGED_SECONDS = 16


def test_a_worker_whose_broker_connection_the_network_forgot_takes_runs_again(
    alice, csv_server, processes
):
    with link() as cable, proxied(RedisProxy(settings.CELERY_BROKER_URL, cable)) as proxy:
        # Given a worker whose broker is at the far end of a link
        processes.start("worker", **{**FAST, "CELERY_BROKER_URL": proxy.url})
        wait_for(lambda: check_workers()["workers"], 60, what="the worker\n" + processes.logs())
        imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))

        # When the link goes down, the proxy forgets its connections, a run is queued, and the
        # link comes back after longer than the keepalives' probes take to give up
        cable.unplug()
        proxy.forget()
        run = services.enqueue_run(imp, trigger="manual", user=alice)
        time.sleep(UNPLUGGED_SECONDS)
        cable.plug()
        forgotten = time.monotonic()

        # Then the worker takes it
        ended = wait_for_the_end(run, processes, NOTICED_WITHIN_SECONDS)
    print(
        f"\n[figures] forgotten broker connection: run ended {time.monotonic() - forgotten:.1f}s "
        f"after the link came back, status={ended.status}",
        flush=True,
    )
    assert ended.status == "succeeded", (ended.status, ended.error_message)
