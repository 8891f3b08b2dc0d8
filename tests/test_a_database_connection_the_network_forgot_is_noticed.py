"""A worker's database connection that the network stopped carrying (a firewall or a NAT that
forgot it, a database host replaced while the link was down) is noticed by TCP keepalives
(project/settings.DATABASE_LINK_OPTIONS), and its run is retried in words. Before, the run
waited for its answer until its time limit, `running` all along.

The worker reaches its database over a link of the test's own (tests.reliability.Link: a
network namespace and a veth pair; root), unplugged while the proxy at its far end forgets the
worker's connections: the reset the proxy sends is lost with the link, as it would be."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import connection

from schedules import services
from schedules.models import Dataset
from tasks.errors import DATABASE_LOST
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, DatabaseProxy, link, proxied, wait_for_the_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

# keepalives_idle (30 s) with the answer of the first probe, and room for a busy machine.
NOTICED_WITHIN_SECONDS = 75


def waiting_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return cursor.fetchone()[0] > 0


def test_a_run_whose_database_connection_the_network_forgot_is_retried(
    alice, csv_server, processes
):
    with link() as cable, proxied(DatabaseProxy(cable)) as proxy:
        # Given a worker whose database is at the far end of a link
        processes.start("worker", **{**FAST, "DATABASE_URL": proxy.url})
        imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), retry_backoff_seconds=1)
        # ... and a run of it waiting for an answer: its dataset is locked by another
        # transaction, so that the worker's statement is sent and acknowledged, then waits
        with psycopg.connect(**connection.get_connection_params()) as holder:
            holder.execute(
                f"SELECT 1 FROM {Dataset._meta.db_table} WHERE id = %s FOR UPDATE",
                [imp.dataset_id],
            )
            run = services.enqueue_run(imp, trigger="manual", user=alice)
            wait_for(waiting_for_a_lock, 60, what="the run to wait\n" + processes.logs())

            # When the link goes down a moment, during which the proxy forgets the connection
            cable.unplug()
            proxy.forget()
            cable.plug()
            forgotten = time.monotonic()
            holder.rollback()

        # Then the worker notices, and its run is retried in words, and succeeds
        ended = wait_for_the_end(run, processes, NOTICED_WITHIN_SECONDS)
    print(
        f"\n[figures] forgotten connection: run ended {time.monotonic() - forgotten:.1f}s "
        f"after, status={ended.status} attempts={ended.attempts}",
        flush=True,
    )
    assert ended.status == "succeeded", (ended.status, ended.error_message)
    assert ended.attempts == 2
    assert [a["error"] for a in ended.error_details["attempts"]] == [DATABASE_LOST]
    assert ended.rows_inserted > 0
