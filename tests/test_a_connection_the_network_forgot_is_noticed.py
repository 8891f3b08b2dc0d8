"""A worker's connection that the network stopped carrying (a firewall or a NAT that forgot
it, a server's host replaced while the link was down) is noticed, and what waited on it goes
on (project/settings: DATABASE_LINK_OPTIONS, BROKER_KEEPALIVE_OPTIONS, CELERY_REDIS_*).

- Its database: a run waiting for an answer is retried in words. Before, it waited until its
  time limit, `running` all along.
- Its broker: the consumer reconnects and takes what was queued meanwhile. Before, kombu's own
  check of an unanswered BRPOP restarted a consumer that took no message again, and the one it
  popped was lost: a worker up and answering pings that ran nothing, and no word of it.
- Its broker, silent a while, its connections kept (a Redis that hangs, a proxy before it that
  loses what it carries): the worker takes runs again. Before, its main process waited for
  ever for the answer to its event heartbeat's publish.
- Flower's broker: Flower reconnects and shows the next run's task failed, as the run log
  does. Before, its event receiver waited for ever on the dead connection, and Flower showed
  no task again.
- Beat's database: beat gives the connection up after tcp_user_timeout (30 s; 10 s in the
  test, DATABASE_URL's override), says the ticks it missed, and dispatches on a new
  connection. Before, it waited on the old one for as long as the kernel
  tried, about 15 minutes, and dispatched nothing.
- Its result backend: a run publishing its progress goes on. Before, it waited in that write
  until the kernel gave the connection up, about 15 minutes, and its worker slot with it.

The worker reaches the server over a link of the test's own (tests.reliability.Link: a network
namespace and a veth pair; root), at whose far end a proxy forgets the worker's connections
while what it sends back is dropped, as a firewall or a NAT drops it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
import redis
import requests
from django.conf import settings
from django.db import connection
from knox.models import AuthToken

from common.redis_client import LEADER_LEASE
from project.devservices import free_port
from schedules import services
from schedules.api.health import check_workers
from schedules.broker import pending_task_ids
from schedules.models import Dataset, ImportRun
from tasks.errors import DATABASE_LOST
from tests.conftest import answers, wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import (
    FAST,
    DatabaseProxy,
    Link,
    RedisProxy,
    TcpProxy,
    big_csv,
    link,
    proxied,
    start_flower,
    wait_for_the_end,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

# The database's keepalives give a silent connection up after 15 s (the first probe's reset),
# with room for a busy machine; the broker's and the result backend's take 11 s and 10 s.
ENDED_WITHIN_SECONDS = 75
# Past the broker's 11 s: its connections time out while the link is down, with no reset.
UNPLUGGED_SECONDS = 13
# BROKER_KEEPALIVE_OPTIONS give a silent connection up after this long.
BROKER_KEEPALIVES_SECONDS = 11
FLOWER_AUTH = ("ops", "s3cret-flower")
# Long enough for the worker's event heartbeat (every 2 s) to be lost in the silence.
SILENT_SECONDS = 5
QUEUE_UNAVAILABLE = "The task queue is unavailable, so no run was queued; try again in 30 seconds."
# ~500 KB in 64 KiB chunks 0.3 s apart: a run of some 3 s, which publishes its progress.
ROWS = 20_000


@contextlib.contextmanager
def a_process_reaching(
    setting: str,
    proxy_of: Callable[[Link], TcpProxy],
    processes,
    name: str = "worker",
    url_query: str = "",
    **env,
) -> Iterator[tuple[Link, TcpProxy]]:
    """The Procfile's `name` (a worker unless told) whose `setting` (a URL, `url_query` added)
    leads over a link to a proxy at its far end."""
    with link() as cable, proxied(proxy_of(cable)) as proxy:
        processes.start(name, **{**FAST, **env, setting: proxy.url + url_query})
        yield cable, proxy


def broker(cable: Link) -> RedisProxy:
    return RedisProxy(settings.CELERY_BROKER_URL, cable)


def succeeds(run: ImportRun, processes, what: str, since: float) -> ImportRun:
    """The run as it ended, within ENDED_WITHIN_SECONDS, its figure said, found succeeded."""
    ended = wait_for_the_end(run, processes, ENDED_WITHIN_SECONDS)
    print(
        f"\n[figures] {what}: run ended {time.monotonic() - since:.1f}s after, "
        f"status={ended.status} attempts={ended.attempts}",
        flush=True,
    )
    assert ended.status == "succeeded", (ended.status, ended.error_message)
    return ended


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
    # Given a worker whose database is at the far end of a link
    with a_process_reaching("DATABASE_URL", DatabaseProxy, processes) as (cable, proxy):
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
        ended = succeeds(run, processes, "forgotten database connection", forgotten)
    assert ended.attempts == 2
    assert [a["error"] for a in ended.error_details["attempts"]] == [DATABASE_LOST]
    assert ended.rows_inserted > 0


def test_a_run_whose_database_connection_the_network_forgot_mid_copy_is_retried(
    alice, csv_server, processes
):
    """A COPY sends and waits for no answer, so no keepalive probes it: what ends it is
    tcp_user_timeout, for data sent and never acknowledged. Here 5 s, DATABASE_URL's
    override of the settings' 30 s, the mechanism the same; with it off (0) the run was still
    `running` 75 s later, its COPY waiting on the kernel's retransmissions."""
    with a_process_reaching(
        "DATABASE_URL", DatabaseProxy, processes, url_query="?tcp_user_timeout=5000"
    ) as (cable, proxy):
        # Given a worker whose database is at the far end of a link, copying a file's rows
        # into the database as they download
        source = csv_server.serve("/big.csv", big_csv(ROWS), chunk_delay=0.3)
        imp = make_import(alice, source, retry_backoff_seconds=1)
        run = services.enqueue_run(imp, trigger="manual", user=alice)
        wait_for(copying, 60, what="the run's COPY\n" + processes.logs())

        # When the network forgets its connections, dropping for good what comes back on them
        proxy.forget(cable)
        forgotten = time.monotonic()

        # Then the COPY is given up, and the run is retried in words, and succeeds
        ended = succeeds(run, processes, "database connection forgotten mid-COPY", forgotten)
    assert ended.attempts == 2
    assert [a["error"] for a in ended.error_details["attempts"]] == [DATABASE_LOST]
    assert ended.rows_inserted == ROWS


def copying() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_progress_copy WHERE datname = current_database()"
        )
        return cursor.fetchone()[0] > 0


def test_beat_whose_database_connection_the_network_forgot_dispatches_again(
    alice, csv_server, processes
):
    # Given beat whose database is at the far end of a link, dispatching an import's ticks
    redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), interval_seconds=2)
    # (its forgotten connection given up after 10 s: DATABASE_URL's override of the settings'
    # 30 s, the mechanism the same, 20 s less of the suite's time)
    with a_process_reaching(
        "DATABASE_URL", DatabaseProxy, processes, "beat", url_query="?tcp_user_timeout=10000"
    ) as (cable, proxy):
        wait_for(lambda: runs_of(imp), 60, what="beat's first run\n" + processes.logs())

        # When the network forgets beat's connection, dropping for good what comes back on it
        proxy.forget(cable)
        forgotten, since = time.monotonic(), database_now()
        skipped_before = processes.logs().count("ticks skipped count=")

        # Then beat gives the connection up and handles the next ticks on a new one: it
        # dispatches one, or skips it behind the first tick's run, which no worker takes here
        # (which of the two depends on how long the dead connection held beat: a run waited
        # for that never came when beat skipped)
        wait_for(
            lambda: (
                [run for run in runs_of(imp) if run.queued_at > since]
                or processes.logs().count("ticks skipped count=") > skipped_before
            ),
            ENDED_WITHIN_SECONDS,
            what="a tick handled after\n" + processes.logs(),
        )
    print(f"\n[figures] forgotten beat database connection: a tick dispatched "
          f"{time.monotonic() - forgotten:.1f}s after", flush=True)  # fmt: skip
    # ... and says why: its own query met the dead connection, or Django's check of a kept
    # connection did (common.database_backend)
    logs = processes.logs()
    assert "beat cannot reach the database" in logs or "failed its check after" in logs


def runs_of(imp) -> list[ImportRun]:
    return list(ImportRun.objects.filter(scheduled_import=imp))


def database_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def test_a_worker_whose_broker_connection_the_network_forgot_takes_runs_again(
    alice, csv_server, processes
):
    # Given a worker whose broker is at the far end of a link
    with a_process_reaching("CELERY_BROKER_URL", broker, processes) as (cable, proxy):
        wait_for(lambda: check_workers()["workers"], 60, what="the worker\n" + processes.logs())
        imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))

        # When the link goes down, the proxy forgets its connections, a run is queued, and the
        # link comes back after longer than the keepalives' probes take to give up
        cable.unplug()
        proxy.forget()
        run = services.enqueue_run(imp, trigger="manual", user=alice)
        time.sleep(UNPLUGGED_SECONDS)
        cable.plug()
        back = time.monotonic()

        # Then the worker takes it
        succeeds(run, processes, "forgotten broker connection, since the link was back", back)


def test_a_worker_whose_broker_stopped_answering_a_while_takes_runs_again(
    alice, csv_server, processes
):
    # Given a worker whose broker is behind a proxy
    with proxied(RedisProxy(settings.CELERY_BROKER_URL)) as proxy:
        processes.start("worker", **{**FAST, "CELERY_BROKER_URL": proxy.url})
        wait_for(lambda: check_workers()["workers"], 60, what="the worker\n" + processes.logs())
        imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))

        # When the broker answers nothing for a few seconds, keeping its connections and
        # losing what they carry (a Redis that hangs, or a proxy before it), then answers again
        proxy.black_hole()
        time.sleep(SILENT_SECONDS)
        proxy.black_hole(False)
        back = time.monotonic()
        run = services.enqueue_run(imp, trigger="manual", user=alice)

        # Then the worker takes the run queued after
        succeeds(run, processes, "broker silent a while, since it answered again", back)


def test_a_result_backend_connection_the_network_forgot_holds_no_run(alice, csv_server, processes):
    # Given a worker whose result backend is at the far end of a link, and a run that
    # published its progress there
    def results(cable: Link) -> RedisProxy:
        return RedisProxy(settings.CELERY_RESULT_BACKEND, cable)

    with a_process_reaching("CELERY_RESULT_BACKEND", results, processes) as (cable, proxy):
        imp = make_import(alice, csv_server.serve("/big.csv", big_csv(ROWS), chunk_delay=0.3))
        first = services.enqueue_run(imp, trigger="manual", user=alice)
        assert wait_for_the_end(first, processes, 60).status == "succeeded"
        wait_for(lambda: proxy.clients, 30, what="the worker's result backend connection")

        # When the network forgets the connections so far, dropping for good what comes back
        # on them, as a NAT does, and the import runs again, publishing its progress
        proxy.forget(cable)
        forgotten = time.monotonic()
        second = services.enqueue_run(imp, trigger="manual", user=alice)

        # Then the run ends
        succeeds(second, processes, "forgotten result backend connection", forgotten)


def test_a_trigger_whose_broker_connection_the_network_forgot_is_answered(
    alice, csv_server, processes
):
    # Given a web of one thread whose broker is at the far end of a link, and a trigger that
    # sent its run's message there
    port = free_port()
    web = {"PORT": str(port), "WEB_CONCURRENCY": "1", "WEB_THREADS": "1"}
    reaching = a_process_reaching("CELERY_BROKER_URL", broker, processes, "web", **web)
    with reaching as (cable, proxy):
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(f"{base}/admin/login/"), 30, what="web\n" + processes.logs())
        _, token = AuthToken.objects.create(user=alice, expiry=None)
        first, second = (
            make_import(alice, csv_server.serve(f"/{name}.csv", PRODUCTS_CSV), name=name,
                        dataset=name)
            for name in ("first", "second")
        )  # fmt: skip

        def trigger(imp) -> requests.Response:
            return requests.post(
                f"{base}/api/v1/imports/{imp.pk}/run",
                headers={"Authorization": f"Token {token}"}, timeout=60,
            )  # fmt: skip

        assert trigger(first).status_code == 202

        # When the network forgets the web's connections so far, dropping for good what comes
        # back on them, as a NAT does, and a trigger comes before the keepalives noticed
        proxy.forget(cable)
        forgotten = time.monotonic()
        soon = trigger(second)
        took = time.monotonic() - forgotten
        # ... and again
        then = trigger(second)

    # Then the first is refused in words within the broker's 11 s, and nothing is left behind
    # (kombu does not send a pipelined publish again: its delivery is uncertain) ...
    print(f"\n[figures] forgotten broker connection: the web's trigger took {took:.1f}s")
    assert soon.status_code == 503, soon.text
    assert soon.json() == {"detail": QUEUE_UNAVAILABLE}
    # ... and the next one is taken, its run's message waiting on the broker
    assert then.status_code == 202, then.text
    assert list(ImportRun.objects.filter(scheduled_import=second)) == [
        queued := ImportRun.objects.get(pk=then.json()["id"])
    ]
    assert queued.celery_task_id in pending_task_ids()


def test_flower_whose_broker_connection_the_network_forgot_shows_the_next_failure(
    alice, csv_server, processes
):
    # Given a worker, and Flower whose broker is at the far end of a link, which has shown a
    # run's task
    processes.start("worker", **FAST)
    with link() as cable, proxied(broker(cable)) as proxy:
        base = start_flower(processes, FLOWER_AUTH, CELERY_BROKER_URL=proxy.url)
        _, flower = processes.started[-1]
        fine = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
        shown = wait_for_the_end(services.enqueue_run(fine, trigger="api", user=alice), processes)
        wait_for(
            lambda: flower_state(base, shown) == "SUCCESS", 30, what="flower\n" + processes.logs()
        )

        # When the network forgets Flower's connections to the broker, dropping for good what
        # comes back on them, as a NAT does, and a run fails once the keepalives had their time
        proxy.forget(cable)
        time.sleep(BROKER_KEEPALIVES_SECONDS + 3)
        gone = make_import(alice, csv_server.base_url + "/gone.csv", name="gone", dataset="gone")
        failed = wait_for_the_end(services.enqueue_run(gone, trigger="api", user=alice), processes)
        assert failed.status == "failed"

        # Then Flower shows its task failed, as the run log does
        wait_for(
            lambda: flower_state(base, failed) == "FAILURE", 30, what="flower\n" + processes.logs()
        )
        # (stopped while its broker answers: without it, Flower's stop waits for its event
        # receiver, which tries again for 20 s)
        processes.stop(flower)


def flower_state(base: str, run: ImportRun) -> str | None:
    task = requests.get(f"{base}/api/tasks", auth=FLOWER_AUTH, timeout=5).json()
    return task.get(run.celery_task_id, {}).get("state")
