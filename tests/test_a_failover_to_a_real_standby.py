"""A failover on real PostgreSQL servers: DATABASE_URL left on a hot standby, then promoted.

The suite's other read-only tests make the server refuse writes with
`default_transaction_read_only`. A standby in recovery is what an operator meets after a
failover that has not finished (or a URL pointed at a replica): `pg_is_in_recovery()` is true
and every write is refused. Here a primary and a standby streaming from it are real servers
(tests/standby_support.py), of each PostgreSQL the machine has (pgserver's 16, the system's 15
here). With the primary gone and DATABASE_URL on the standby, health says
it is a standby and what to do, a trigger is refused in words and leaves nothing behind, and a
worker does not start. Once the standby is promoted, the same web serves writes without a
restart, and a worker runs the run it queues.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import requests

from common import read_only_database
from common.error_words import CLASS_NAME, database_place
from project.devservices import free_port
from tests.conftest import BASE_DIR, answers, wait_for
from tests.factories import PRODUCTS_CSV
from tests.reliability import FAST
from tests.standby_support import DATABASE, Cluster, binaries, primary_and_standby
from tests.test_worker_not_started_without_its_database_or_broker import refusal

pytestmark = pytest.mark.processes

SETUP = """
import json
from django.contrib.auth import get_user_model
from knox.models import AuthToken
from tests.factories import make_import
users = get_user_model().objects
alice = users.create_user("alice", email="alice@example.com")
ops = users.create_user("ops", is_staff=True)
make_import(ops, {source!r}, name="ticking", dataset="ticks", interval_seconds=2)
print(json.dumps({{
    "import": make_import(alice, {source!r}).pk,
    "alice": AuthToken.objects.create(user=alice, expiry=None)[1],
    "ops": AuthToken.objects.create(user=ops, expiry=None)[1],
}}))
"""


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BASE_DIR / ".venv" / "bin" / "python"), "manage.py", *args],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def place(cluster: Cluster) -> str:
    return database_place({"NAME": DATABASE, "HOST": "127.0.0.1", "PORT": cluster.port})


@pytest.mark.parametrize("bin_dir", binaries().values(), ids=binaries().keys())
def test_a_standby_is_said_until_it_is_promoted_then_serves(csv_server, processes, bin_dir):
    source = csv_server.serve("/p.csv", PRODUCTS_CSV)
    made: dict[str, object] = {}

    def prepare(primary: Cluster) -> None:
        env = processes.env(DATABASE_URL=primary.url)
        manage(env, "migrate", "--noinput")
        made.update(
            json.loads(manage(env, "shell", "-c", SETUP.format(source=source)).splitlines()[-1])
        )

    with primary_and_standby(prepare, bin_dir) as (primary, standby):
        # Given the primary gone, and the web on its standby, as a failover half done leaves it
        primary.stop()
        assert standby.query("SELECT pg_is_in_recovery()") == [(True,)]
        port = free_port()
        processes.start("web", PORT=str(port), WEB_CONCURRENCY="1", DATABASE_URL=standby.url)
        # and beat, with an import of ops due every 2 s
        processes.start("beat", DATABASE_URL=standby.url, **FAST)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(f"{base}/admin/login/"), 30, what="web\n" + processes.logs())
        ops = {"Authorization": f"Token {made['ops']}"}
        alice = {"Authorization": f"Token {made['alice']}"}
        trigger = f"{base}/api/v1/imports/{made['import']}/run"

        # When staff ask for health, alice triggers her import, and a worker starts
        health = requests.get(f"{base}/api/v1/health", headers=ops, timeout=30)
        refused = requests.post(trigger, headers=alice, timeout=30)
        worker = processes.start("worker", DATABASE_URL=standby.url)

        # Then health is down, saying it is a standby and what to do
        assert health.status_code == 503, health.text
        assert health.json()["checks"]["database"] == {
            "ok": False,
            "error": f"{place(standby)} takes no writes: {read_only_database.STANDBY}",
        }
        # and the trigger is refused in words, and no run is left behind
        assert refused.status_code == 503, refused.text
        assert refused.json() == {"detail": read_only_database.ANSWER}
        assert not CLASS_NAME.search(refused.text)
        assert standby.query("SELECT count(*) FROM schedules_importrun") == [(0,)]
        # and the worker does not start, saying why
        assert refusal(processes, worker) == (
            f"importbeat worker not started: {place(standby)} takes no writes: "
            f"{read_only_database.STANDBY}"
        )

        # and beat dispatches nothing, saying why, nor can it install its maintenance jobs
        wait_for(
            lambda: "beat cannot write to the database" in processes.logs(), 30,
            what="beat's words\n" + processes.logs(),
        )  # fmt: skip
        beat_log = processes.log_of("beat")
        assert re.search(
            r"beat cannot install its job importbeat:maintenance:sweep: the database takes no"
            r" writes \(cannot execute \w+ in a read-only transaction\); it tries again at each"
            r" loop",
            beat_log,
        )
        assert "Traceback" not in beat_log

        # When the operator promotes the standby
        standby.promote()

        # Then the same web, not restarted, says the database is well and queues a run
        health = requests.get(f"{base}/api/v1/health", headers=ops, timeout=30)
        assert health.json()["checks"]["database"]["ok"] is True, health.text
        queued = requests.post(trigger, headers=alice, timeout=30)
        assert queued.status_code == 202, queued.text
        # and a worker started now runs it
        processes.start("worker", DATABASE_URL=standby.url, **FAST)
        run_id = queued.json()["id"]
        finished = "SELECT status, rows_inserted FROM schedules_importrun WHERE id = %s"
        wait_for(
            lambda: standby.query(finished, run_id) == [("succeeded", 3)],
            60,
            what=f"the run to succeed\n{processes.logs()}\n{standby.log()}",
        )
        # and beat, not restarted, dispatches the ticks again, which run
        ticked = (
            "SELECT count(*) FROM schedules_importrun r JOIN schedules_scheduledimport i"
            " ON i.id = r.scheduled_import_id"
            " WHERE i.name = 'ticking' AND r.trigger = 'schedule' AND r.status = 'succeeded'"
        )
        wait_for(
            lambda: standby.query(ticked)[0][0] >= 2,
            60,
            what=f"ticks after the promotion\n{processes.logs()}",
        )
        # and installs its maintenance jobs, which run: before, they were never installed
        # until beat was restarted, and no sweep, reconciliation or retention ran
        jobs = "SELECT name FROM django_celery_beat_periodictask WHERE name LIKE 'importbeat:%%'"
        assert sorted(standby.query(jobs)) == [
            ("importbeat:maintenance:reconcile",),
            ("importbeat:maintenance:retention",),
            ("importbeat:maintenance:sweep",),
        ]
        wait_for(
            lambda: re.search(r"importbeat.sweep_runs\[\S+\] succeeded", processes.logs()),
            60,
            what=f"a sweep after the promotion\n{processes.logs()}",
        )

        # When the new primary restarts under them (stopped at once, then started again)
        ticks_before = standby.query(ticked)[0][0]
        said_before = len(processes.log_of("beat"))
        standby.stop()
        wait_for(
            lambda: "beat cannot reach the database" in processes.log_of("beat")[said_before:],
            30,
            what=f"beat's words on the outage\n{processes.logs()}",
        )
        standby.start()

        # Then beat, not restarted, dispatches again, having said the outage in words alone:
        # django-celery-beat logged a traceback at each loop ("Database gave error")
        wait_for(
            lambda: standby.query(ticked)[0][0] >= ticks_before + 2,
            60,
            what=f"ticks after the restart\n{processes.logs()}",
        )
        beat_log = processes.log_of("beat")
        assert "Database gave error" not in beat_log
        assert "Traceback" not in beat_log
        processes.stop_all()  # before the servers stop
