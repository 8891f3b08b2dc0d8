"""A Redis that answers but refuses to write: full (at its `maxmemory`, with `noeviction`, as
Celery advises for a broker) or a read-only replica (a failover pointed REDIS_URL at it).

Before, `/api/v1/health` said the broker was fine (its probe only reads) and told staff that
the workers could not be reached, "the reason is in the log"; a trigger answered a 500 and left
a queued run without a message, which blocked the import's next trigger with a 409 until
reconciliation's grace period: kombu's pipelined publish raises its own `BatchPublishError`,
which importbeat did not take for the broker's refusal. And a Redis that may evict keys when it
is full (any `maxmemory-policy` but `noeviction`) drops run leases and queued messages without a
word: health says so before it happens.
"""

from __future__ import annotations

import time

import pytest
import redis
import requests
from django.contrib.auth import get_user_model
from knox.models import AuthToken

from common import error_words
from common.error_words import CLASS_NAME
from project.devservices import free_port
from schedules.models import ImportRun
from tests.conftest import answers, wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, redis_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

METRICS_AUTH = ("ops", "metrics-secret")


@pytest.fixture
def web_on_its_own_redis(alice, csv_server, processes, tmp_path):
    """The Procfile's web on a Redis of its own (broker, locks and caches), alice's import, and
    a staff token for the health check's details."""
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    _, token = AuthToken.objects.create(user=alice, expiry=None)
    ops = get_user_model().objects.create_user("ops", is_staff=True)
    _, ops_token = AuthToken.objects.create(user=ops, expiry=None)
    with redis_server(free_port(), tmp_path) as server:
        port = free_port()
        env = {"REDIS_URL": server.url, "CELERY_BROKER_URL": server.url}
        processes.start(
            "web", PORT=str(port), WEB_CONCURRENCY="1", FLOWER_BASIC_AUTH=":".join(METRICS_AUTH),
            **env,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(f"{base}/admin/login/"), 30, what="web\n" + processes.logs())
        yield {
            "base": base, "import": imp, "server": server, "env": env,
            "alice": {"Authorization": f"Token {token}"},
            "ops": {"Authorization": f"Token {ops_token}"},
            "redis": redis.Redis.from_url(server.url),
        }  # fmt: skip


def trigger(web) -> requests.Response:
    return requests.post(
        f"{web['base']}/api/v1/imports/{web['import'].pk}/run", headers=web["alice"], timeout=30
    )


def metrics(web) -> str:
    answer = requests.get(f"{web['base']}/metrics", auth=METRICS_AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.text


def health(web) -> requests.Response:
    return requests.get(f"{web['base']}/api/v1/health", headers=web["ops"], timeout=30)


def test_a_full_broker_refuses_the_trigger_in_words_and_health_says_it_is_full(
    web_on_its_own_redis, processes
):
    web = web_on_its_own_redis
    port = web["server"].port
    # Given a Redis at its maxmemory that evicts nothing (every write refused)
    web["redis"].config_set("maxmemory-policy", "noeviction")
    web["redis"].config_set("maxmemory", "1")

    # When alice triggers her import
    refused = trigger(web)

    # Then she is told the queue is full, and no run is left to block her next trigger
    assert refused.status_code == 503, refused.text
    assert refused.json()["detail"] == (
        "The task queue is full and takes no new run, so no run was queued; try again in 30 "
        "seconds."
    )
    assert not ImportRun.objects.filter(scheduled_import=web["import"]).exists()
    # ... and health is down, naming the broker and why, in plain words
    answer = health(web)
    assert answer.status_code == 503, answer.text
    broker = answer.json()["checks"]["broker"]
    assert broker["ok"] is False
    assert broker["error"] == (
        f"the broker at 127.0.0.1:{port} refuses new messages: Redis is full: it reached its "
        "maxmemory and evicts nothing; free memory or raise maxmemory"
    )
    assert not CLASS_NAME.search(answer.text), answer.text

    # And once Redis has room again, the next trigger is queued and runs
    web["redis"].config_set("maxmemory", "0")
    processes.start("worker", **web["env"], **FAST)
    queued = trigger(web)
    assert queued.status_code == 202, queued.text
    wait_for(
        lambda: ImportRun.objects.filter(pk=queued.json()["id"], status="succeeded").exists(),
        60,
        what="the run to succeed\n" + processes.logs(),
    )
    assert health(web).json()["checks"]["broker"]["ok"] is True


def test_a_worker_running_when_redis_fills_keeps_going_and_takes_the_next_run_once_it_has_room(
    web_on_its_own_redis, processes, csv_server, alice
):
    """Redis fills while a worker runs an import, a run queued behind it. Before, the worker's
    acknowledgement of the finished run met the full Redis, kombu raised it as a channel error,
    and the worker stopped for good ("Unrecoverable error: server:OutOfMemoryError"): the run
    behind it waited for a worker that never came back, even once Redis had room."""
    web = web_on_its_own_redis
    rows = "".join(f"S-{n},thing {n},{n}.5\n" for n in range(60_000))
    slow_source = csv_server.serve("/slow.csv", "sku,name,price\n" + rows, chunk_delay=0.2)
    slow = make_import(alice, slow_source, name="slow", dataset="slow")
    worker = processes.start("worker", **web["env"], **FAST)  # one run at a time
    wait_for(lambda: health(web).json()["checks"]["workers"]["ok"], 60, what=processes.logs())
    first = post_run(web, slow)
    wait_for(lambda: run_status(first) == "running", 30, what="the first run\n" + processes.logs())
    behind = post_run(web, web["import"])

    # When Redis fills (at its maxmemory, evicting nothing) while the first run goes on
    web["redis"].config_set("maxmemory-policy", "noeviction")
    web["redis"].config_set("maxmemory", "1")

    # Then the first run ends as it would have (its outcome is in the database)
    wait_for(
        lambda: run_status(first) == "succeeded", 60, what="the first run\n" + processes.logs()
    )
    # ... and the worker stays, waiting for Redis to take writes again
    time.sleep(3)
    assert worker.poll() is None, processes.logs()
    assert run_status(behind) == "queued"
    # saying why once, not twenty lines a second: the consumer restarted at once five times,
    # then said "Frequent restarts detected" with a traceback, every second
    log = processes.log_of("worker")
    cannot_connect = [line for line in log.splitlines() if "consumer: Cannot connect" in line]
    assert len(cannot_connect) == 1, log
    assert cannot_connect[0].endswith(f"maxmemory'.. ({error_words.FULL})"), log
    assert log.count("Frequent restarts detected") <= 1, log
    assert "RestartFreqExceeded: " not in log, log

    # And once Redis has room, it takes the run behind
    web["redis"].config_set("maxmemory", "0")
    wait_for(
        lambda: run_status(behind) == "succeeded", 60, what="the run behind\n" + processes.logs()
    )
    assert "Unrecoverable error" not in processes.logs()


def post_run(web, imp) -> int:
    answer = requests.post(
        f"{web['base']}/api/v1/imports/{imp.pk}/run", headers=web["alice"], timeout=30
    )
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def run_status(pk: int) -> str:
    return ImportRun.objects.values_list("status", flat=True).get(pk=pk)


def test_a_read_only_replica_refuses_the_trigger_and_health_names_it(web_on_its_own_redis):
    web = web_on_its_own_redis
    port = web["server"].port
    # Given the Redis behind REDIS_URL became a replica (of a primary that is not there)
    web["redis"].replicaof("127.0.0.1", free_port())

    refused = trigger(web)

    assert refused.status_code == 503, refused.text
    assert "so no run was queued" in refused.json()["detail"]
    assert not ImportRun.objects.filter(scheduled_import=web["import"]).exists()
    broker = health(web).json()["checks"]["broker"]
    assert broker["error"] == (
        f"the broker at 127.0.0.1:{port} refuses new messages: it is a read-only replica: "
        "point the URL at the primary"
    )
    web["redis"].replicaof("NO", "ONE")


def test_a_redis_that_may_evict_keys_makes_health_degraded(web_on_its_own_redis):
    web = web_on_its_own_redis
    port = web["server"].port
    # Given a Redis with a memory cap that evicts keys when full (a cache's setting)
    web["redis"].config_set("maxmemory", "512mb")
    web["redis"].config_set("maxmemory-policy", "allkeys-lru")

    answer = health(web)

    # Then health is degraded (nothing is lost yet), saying what may be lost and what to set
    body = answer.json()
    assert body["checks"]["broker"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["redis"]["message"] == (
        f"Redis at 127.0.0.1:{port} may evict keys when it is full (maxmemory-policy "
        "allkeys-lru): queued runs, run locks and task results would be lost without a word; "
        "set maxmemory-policy noeviction"
    )

    # ... and /metrics says it too
    server = f'server="127.0.0.1:{port}"'
    assert f"importbeat_redis_may_evict{{{server}}} 1.0" in metrics(web)

    # And when it did evict keys, health says so, still after the policy was put right
    web["redis"].config_set("maxmemory", "2mb")
    for n in range(40):
        web["redis"].set(f"filler:{n}", b"x" * 100_000)
    web["redis"].config_set("maxmemory-policy", "noeviction")
    redis_check = health(web).json()["checks"]["redis"]
    evicted = redis_check["evicted_keys"]
    assert evicted > 0
    assert redis_check["message"] == (
        f"Redis at 127.0.0.1:{port} evicted {evicted} keys since it started: queued runs, run "
        "locks and task results may have been lost; set maxmemory-policy noeviction"
    )

    scraped = metrics(web)
    assert f"importbeat_redis_may_evict{{{server}}} 0.0" in scraped
    assert f"importbeat_redis_evicted_keys{{{server}}} {float(evicted)}" in scraped

    # And once the policy is right and the count reset (CONFIG RESETSTAT), the check passes
    web["redis"].config_set("maxmemory", "0")
    web["redis"].config_resetstat()
    assert health(web).json()["checks"]["redis"]["ok"] is True
    assert f"importbeat_redis_evicted_keys{{{server}}} 0.0" in metrics(web)


def test_a_broker_on_a_redis_of_its_own_that_may_evict_is_said(alice, processes, tmp_path):
    """The broker on a Redis of its own (REDIS_URL's for locks and stamps, another for the
    queue): each is read. Before, only REDIS_URL's was, and a broker that drops queued runs
    when full passed as fine."""
    ops = get_user_model().objects.create_user("ops", is_staff=True)
    _, ops_token = AuthToken.objects.create(user=ops, expiry=None)
    for name in ("locks", "queue"):
        (tmp_path / name).mkdir()
    with (
        redis_server(free_port(), tmp_path / "locks") as locks,
        redis_server(free_port(), tmp_path / "queue") as queue,
    ):
        # Given a broker's Redis with a memory cap that evicts keys (a cache's setting), and
        # REDIS_URL's that keeps them
        redis.Redis.from_url(queue.url).config_set("maxmemory", "512mb")
        redis.Redis.from_url(queue.url).config_set("maxmemory-policy", "allkeys-lru")
        port = free_port()
        processes.start(
            "web", PORT=str(port), WEB_CONCURRENCY="1", FLOWER_BASIC_AUTH=":".join(METRICS_AUTH),
            REDIS_URL=locks.url, CELERY_BROKER_URL=queue.url, CELERY_RESULT_BACKEND=locks.url,
        )  # fmt: skip
        web = {"base": f"http://127.0.0.1:{port}", "ops": {"Authorization": f"Token {ops_token}"}}
        wait_for(lambda: answers(f"{web['base']}/admin/login/"), 30, what=processes.logs())

        # When staff ask for health
        answer = health(web)

        # Then the broker answers, and the redis check names the broker's Redis and what it holds
        body = answer.json()
        assert body["checks"]["broker"]["ok"] is True, body
        check = body["checks"]["redis"]
        assert check["ok"] is False
        assert check["message"] == (
            f"Redis at 127.0.0.1:{queue.port} (CELERY_BROKER_URL) may evict keys when it is full "
            "(maxmemory-policy allkeys-lru): queued runs would be lost without a word; set "
            "maxmemory-policy noeviction"
        )
        assert [(server["at"], server["for"], server["ok"]) for server in check["servers"]] == [
            (f"127.0.0.1:{queue.port}", ["CELERY_BROKER_URL"], False),
            (f"127.0.0.1:{locks.port}", ["REDIS_URL", "CELERY_RESULT_BACKEND"], True),
        ]
        # ... and /metrics has a sample per server
        scraped = metrics(web)
        assert f'importbeat_redis_may_evict{{server="127.0.0.1:{queue.port}"}} 1.0' in scraped
        assert f'importbeat_redis_may_evict{{server="127.0.0.1:{locks.port}"}} 0.0' in scraped

        # And once the broker's Redis has no cap, the check passes
        redis.Redis.from_url(queue.url).config_set("maxmemory", "0")
        assert health(web).json()["checks"]["redis"]["ok"] is True


def test_a_broker_user_kept_to_kombus_keys_by_an_acl_is_not_taken_for_a_broker_down(
    alice, processes, tmp_path
):
    """The broker's probe writes a key of its own to learn whether Redis takes writes. An ACL
    that keeps the broker's user to kombu's keys refuses that key before Redis looks at its
    memory: the refusal says nothing of room, and health must not call such a broker down."""
    ops = get_user_model().objects.create_user("ops", is_staff=True)
    _, ops_token = AuthToken.objects.create(user=ops, expiry=None)
    with redis_server(free_port(), tmp_path) as server:
        # Given a broker user that may write kombu's keys only
        redis.Redis.from_url(server.url).acl_setuser(
            "broker", enabled=True, passwords=["+broker-secret"], categories=["+@all"],
            keys=["celery*", "_kombu*", "unacked*"],
        )  # fmt: skip
        broker_url = f"redis://broker:broker-secret@127.0.0.1:{server.port}/0"
        port = free_port()
        processes.start(
            "web", PORT=str(port), WEB_CONCURRENCY="1", REDIS_URL=server.url,
            CELERY_BROKER_URL=broker_url, CELERY_RESULT_BACKEND=server.url,
        )  # fmt: skip
        web = {"base": f"http://127.0.0.1:{port}", "ops": {"Authorization": f"Token {ops_token}"}}
        wait_for(lambda: answers(f"{web['base']}/admin/login/"), 30, what=processes.logs())

        # When staff ask for health, Then the broker is there
        broker = health(web).json()["checks"]["broker"]
        assert broker["ok"] is True, broker
