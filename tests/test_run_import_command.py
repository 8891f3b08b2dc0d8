"""`manage.py run_import IMPORT_ID` runs an import now, in the foreground, as a manual run."""

import io
import os
import signal
import subprocess
import sys
import time

import pytest
from django.core.management import CommandError, call_command

from schedules.models import ImportRun
from tasks.management.commands.run_import import INTERRUPTED
from tests.api_support import make_run
from tests.conftest import BASE_DIR, wait_for
from tests.conftest import test_database_url as database_url
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import big_csv

pytestmark = pytest.mark.django_db


def test_it_runs_the_import_here_as_a_manual_run_and_prints_the_counts(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    out = io.StringIO()

    call_command("run_import", imp.pk, stdout=out, stderr=io.StringIO())

    run = ImportRun.objects.get(scheduled_import=imp)
    assert (run.trigger, run.status, run.rows_inserted) == ("manual", "succeeded", 3)
    assert f"run {run.pk}: succeeded" in out.getvalue()
    assert "rows read 3, inserted 3, updated 0, unchanged 0, deleted 0, failed 0" in out.getvalue()


def test_it_lists_the_bad_rows_of_a_partial_run(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV + ",no key,1\n"))
    out = io.StringIO()

    call_command("run_import", imp.pk, stdout=out, stderr=io.StringIO())

    assert "partial" in out.getvalue()
    assert "line 5 [sku]: the key is empty" in out.getvalue()


def test_a_failed_run_raises_so_the_exit_code_is_not_zero(alice, csv_server):
    imp = make_import(alice, csv_server.base_url + "/missing.csv")

    with pytest.raises(CommandError, match="failed: the server answered HTTP 404"):
        call_command("run_import", imp.pk, stdout=io.StringIO(), stderr=io.StringIO())


def test_a_missing_import_id_exits_non_zero_with_a_clear_error():
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_DEBUG": "1"}

    result = subprocess.run(
        [sys.executable, "manage.py", "run_import", "987654"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 1
    assert "there is no import with id 987654" in result.stderr


def test_it_draws_a_progress_bar_on_a_terminal(alice, csv_server, monkeypatch):
    # Given stderr is a terminal (tqdm draws only there)
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    err = io.StringIO()
    err.isatty = lambda: True

    call_command("run_import", imp.pk, stdout=io.StringIO(), stderr=err)

    assert "download" in err.getvalue() and "rows=3" in err.getvalue()


def test_its_header_is_plain_text_even_where_errors_are_red(alice, csv_server):
    # (regression: the header went through stderr's error style and showed in red)
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    err = io.StringIO()

    call_command("run_import", imp.pk, stdout=io.StringIO(), stderr=err, force_color=True)

    header = err.getvalue().splitlines()[0]
    assert header.startswith(f"import {imp.pk} (products)") and "\x1b[" not in header


def a_slow_foreground_run(alice, csv_server) -> tuple:
    """An import of a slow file, and `run_import` of it in a process of its own, downloading."""
    body = "sku,price\n" + "".join(f"k{i},{i}\n" for i in range(60000))
    imp = make_import(alice, csv_server.serve("/slow.csv", body, chunk_delay=0.5))
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_DEBUG": "1",
           "ALLOWED_PRIVATE_HOSTS": "127.0.0.1:*"}  # fmt: skip
    command = subprocess.Popen(
        [sys.executable, "manage.py", "run_import", str(imp.pk), "--no-progress"],
        cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: csv_server.hits.get("/slow.csv"), 60, what="the download")
    time.sleep(0.5)
    return imp, command


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_an_interrupted_foreground_run_ends_cancelled_and_says_so(alice, csv_server, signum):
    # It was left `running` (triggers answered 409), a traceback for Ctrl-C and no word for
    # SIGTERM or a terminal hanging up (SIGHUP, ops hunt), and the sweep later sent the run
    # the operator had stopped to a worker
    imp, command = a_slow_foreground_run(alice, csv_server)

    command.send_signal(signum)
    out, err = command.communicate(timeout=60)

    run = ImportRun.objects.get(scheduled_import=imp)
    assert command.returncode == 130, err
    assert "Traceback" not in err
    assert (run.status, run.error_message) == ("cancelled", INTERRUPTED)
    assert f"run {run.pk} cancelled: interrupted" in err
    assert f"run {run.pk}: cancelled" in out


@pytest.mark.django_db(transaction=True)
def test_ctrl_c_pressed_twice_ends_the_run_cancelled_without_a_traceback(alice, csv_server):
    # Regression (ops hunt): the second, landing while the first was handled, cut the run's
    # ending short with a traceback, exit -2, the run left `running` and later sent to a worker
    # Given run_import downloading a slow file in a process of its own
    imp, command = a_slow_foreground_run(alice, csv_server)

    # When Ctrl-C is pressed, and again while the first is handled (every 20 ms for 2 s)
    deadline = time.monotonic() + 2
    while command.poll() is None and time.monotonic() < deadline:
        command.send_signal(signal.SIGINT)
        time.sleep(0.02)
    _, err = command.communicate(timeout=60)

    # Then the run is over (not `running`), and the command says so in words
    run = ImportRun.objects.get(scheduled_import=imp)
    assert run.status == "cancelled", (run.status, err[-1500:])
    assert "Traceback" not in err, err[-1500:]
    assert command.returncode == 130, (command.returncode, err[-600:])


def test_a_run_skipped_behind_another_says_skipped_once(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    make_run(imp, "running", attempts=1)

    with pytest.raises(CommandError) as raised:
        call_command("run_import", imp.pk, stdout=io.StringIO(), stderr=io.StringIO())

    assert " skipped: " in str(raised.value) and "skipped: skipped" not in str(raised.value)


def test_a_foreground_run_past_its_time_limit_ends_timed_out_as_a_workers_does(alice, csv_server):
    # Given an import with a 2 s limit whose download takes about 6 s
    url = csv_server.serve("/slow.csv", big_csv(20_000), chunk_delay=0.8)
    imp = make_import(alice, url, timeout_seconds=2)

    # When it is run in the foreground, then it stops at its limit, timed out, and says so
    started = time.monotonic()
    with pytest.raises(CommandError, match=r"timed_out: the run exceeded its 2s time limit$"):
        call_command("run_import", imp.pk, stdout=io.StringIO(), stderr=io.StringIO())
    assert time.monotonic() - started < 5
    run = ImportRun.objects.get(scheduled_import=imp)
    assert (run.status, run.rows_committed_at) == ("timed_out", None)
    imp.refresh_from_db()
    assert (imp.failed_runs, imp.consecutive_failures) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_an_import_deleted_while_it_runs_ends_the_command_in_words(alice, csv_server):
    # The runner ended the run, and the command printed ImportRun.DoesNotExist's traceback
    from schedules import services

    imp, command = a_slow_foreground_run(alice, csv_server)

    services.delete_import(imp)
    _, err = command.communicate(timeout=120)

    assert command.returncode == 1 and "Traceback" not in err, err[-800:]
    assert err.rstrip().endswith(
        "cancelled: its import was deleted while it ran; the dataset was not changed"
    ), err[-800:]


def test_an_import_of_a_deactivated_account_is_refused_as_the_api_refuses_it(alice, csv_server):
    # Regression (ops hunt): it ran, fetching and writing for an account closed
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    alice.is_active = False
    alice.save()

    with pytest.raises(CommandError) as raised:
        call_command("run_import", imp.pk, stdout=io.StringIO(), stderr=io.StringIO())

    assert str(raised.value) == (
        f"import {imp.pk}: its owner's account is deactivated: reactivate the account first"
    )
    assert not ImportRun.objects.filter(scheduled_import=imp).exists()
