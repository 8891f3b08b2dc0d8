"""Run now, Pause / Resume and Test source as buttons on an import's own admin page, going
through the same services as the list's actions."""

import pytest
from django_celery_beat.models import PeriodicTask

from schedules.models import ImportRun, ScheduledImport
from tests.api_support import SOURCE, make_run
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = pytest.mark.django_db

CHANGE = "/admin/schedules/scheduledimport/{}/change/"


def url(imp: ScheduledImport, action: str) -> str:
    return f"/admin/schedules/scheduledimport/{imp.pk}/{action}/"


def test_the_import_page_has_its_action_buttons(admin_client, alice):
    imp = make_import(alice, SOURCE)

    html = admin_client.get(CHANGE.format(imp.pk)).content.decode()

    for action, label in [
        ("run_now", "Run now"),
        ("pause", "Pause"),
        ("test_source", "Test source"),
    ]:
        assert f'action="{url(imp, action)}"' in html and f">{label}</button>" in html
    assert "csrfmiddlewaretoken" in html.split('class="object-tools"')[1]


def test_run_now_queues_a_manual_run_and_comes_back_to_the_page(admin_client, alice):
    imp = make_import(alice, SOURCE)

    response = admin_client.post(url(imp, "run_now"), follow=True)

    assert response.redirect_chain[-1][0] == CHANGE.format(imp.pk)
    run = imp.runs.get()
    assert (run.trigger, run.status, run.triggered_by.username) == ("manual", "queued", "admin")
    assert "Queued 1 run" in response.content.decode()


def test_run_now_says_which_run_is_already_active(admin_client, alice):
    imp = make_import(alice, SOURCE)
    busy = make_run(imp, "running")

    response = admin_client.post(url(imp, "run_now"), follow=True)

    assert f"Already running: products (run {busy.pk} is running)" in response.content.decode()
    assert imp.runs.count() == 1


def test_pause_and_resume_buttons_move_the_beat_entry(admin_client, alice):
    imp = make_import(alice, SOURCE)

    admin_client.post(url(imp, "pause"))
    paused = admin_client.get(CHANGE.format(imp.pk)).content.decode()
    assert ScheduledImport.objects.get(pk=imp.pk).status == "paused"
    assert not PeriodicTask.objects.get(pk=imp.periodic_task_id).enabled
    assert ">Resume</button>" in paused and ">Pause</button>" not in paused

    admin_client.post(url(imp, "resume"))
    assert ScheduledImport.objects.get(pk=imp.pk).status == "active"
    assert PeriodicTask.objects.get(pk=imp.periodic_task_id).enabled


def test_the_buttons_take_only_a_post_from_staff(admin_client, client, alice):
    imp = make_import(alice, SOURCE)

    assert admin_client.get(url(imp, "run_now")).status_code == 405
    client.force_login(alice)  # not staff
    assert client.post(url(imp, "run_now")).status_code == 302  # to the admin login
    assert not ImportRun.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.processes
def test_test_source_asks_a_worker_and_shows_the_columns_or_the_problem(
    admin_client, alice, csv_server, processes
):
    # Given a worker, an import of a good file and one of a file without its key column
    processes.start("worker")
    good = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    bad = make_import(
        alice, csv_server.serve("/q.csv", "name,price\nAnvil,1\n"), name="no key", dataset="nk"
    )
    from project.celery import app

    wait_for(lambda: app.control.ping(timeout=0.5), 30, what="the worker\n" + processes.logs())

    # When staff press Test source on each
    ok = admin_client.post(url(good, "test_source"), follow=True).content.decode()
    refused = admin_client.post(url(bad, "test_source"), follow=True).content.decode()

    # Then the columns and the first row, or the reason, show; nothing ran or was written
    assert "Test source: the file answers (" in ok
    assert "with columns sku, name, price; first row: A-1, Anvil, 10.50." in ok
    assert "Test source: the key column &#x27;sku&#x27; is not in the file" in refused
    assert not ImportRun.objects.exists()


def test_test_source_without_a_worker_says_so_instead_of_hanging(alice):
    from schedules.source_check import check_source

    imp = make_import(alice, SOURCE)

    result = check_source(imp, wait=0.5)

    assert not result.ok
    assert result.summary() == (
        "Test source: no worker answered within 0.5 s; is a worker running?"
    )


@pytest.mark.parametrize("action", ["run_now", "pause", "resume", "test_source"])
def test_a_button_of_an_id_that_is_no_number_is_a_404(admin_client, action):
    response = admin_client.post(f"/admin/schedules/scheduledimport/abc/{action}/")

    assert response.status_code == 404  # the lookup's ValueError was a 500
