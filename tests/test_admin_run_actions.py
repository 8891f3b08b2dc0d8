"""The admin's run actions, Cancel and Retry now, go through the same services as the API.
(`admin_client` is pytest-django's: a superuser called admin.)"""

import pytest

from schedules.models import ImportRun
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/schedules/importrun/"


def act(client, action: str, *runs):
    return client.post(
        CHANGELIST, {"action": action, "_selected_action": [r.pk for r in runs]}, follow=True
    )


def test_cancel_ends_a_queued_run_and_says_which_could_not_be(admin_client, alice):
    imp = make_import(alice, SOURCE)
    queued = make_run(imp, "queued")
    done = make_run(make_import(alice, SOURCE, name="other"), "succeeded")

    html = act(admin_client, "cancel_runs", queued, done).content.decode()

    queued.refresh_from_db()
    assert (queued.status, queued.error_message) == ("cancelled", "cancelled by admin")
    assert "Cancelled 1 run(s)." in html
    assert f"run {done.pk} is succeeded" in html


def test_retry_now_queues_a_new_run_of_a_failed_one(admin_client, alice):
    failed = make_run(make_import(alice, SOURCE), "failed")

    html = act(admin_client, "retry_runs", failed).content.decode()

    retry = ImportRun.objects.get(retry_of=failed)
    assert (retry.status, retry.trigger) == ("queued", "manual")
    assert retry.triggered_by.username == "admin"
    assert "Queued 1 retry run(s)." in html


def test_retry_now_of_a_run_whose_owner_is_deactivated_says_so(admin_client, alice):
    # It answered 500
    failed = make_run(make_import(alice, SOURCE), "failed")
    alice.is_active = False
    alice.save()

    response = act(admin_client, "retry_runs", failed)

    assert response.status_code == 200
    assert not ImportRun.objects.filter(retry_of=failed).exists()
    assert (
        f"Not done: run {failed.pk}: its owner&#x27;s account is deactivated"
        in response.content.decode()
    )


def test_staff_who_may_only_view_are_offered_no_action_and_none_is_done(
    client, django_user_model, alice
):
    # Given staff whose only permissions are to view imports and runs
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.set(
        Permission.objects.filter(codename__in=["view_scheduledimport", "view_importrun"])
    )
    client.force_login(viewer)
    imp = make_import(alice, SOURCE)
    failed = make_run(imp, "failed")

    # When they post the lists' actions anyway (the page's buttons refused them, the lists not)
    for action in ("run_now", "pause", "cancel"):
        client.post(
            "/admin/schedules/scheduledimport/", {"action": action, "_selected_action": [imp.pk]}
        )
    act(client, "retry_runs", failed)

    # Then nothing was done, and the lists offer them no action
    imp.refresh_from_db()
    assert imp.status == "active" and list(ImportRun.objects.all()) == [failed]
    for changelist in ("/admin/schedules/scheduledimport/", CHANGELIST):
        assert 'name="action"' not in client.get(changelist).content.decode()
