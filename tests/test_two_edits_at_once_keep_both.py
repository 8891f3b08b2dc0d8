"""Two edits of one import at once (API, admin, code) keep each other's fields: each applies the
fields it was given to the import as it is when it saves, not as it read it. The later of two
PATCHes of different fields wrote the earlier one's fields back as it had read them, and a
pause was undone by an edit saved after it: told 200 "paused", the import fired on."""

from __future__ import annotations

import pytest
from django_celery_beat.models import PeriodicTask

from schedules import services
from schedules.models import ScheduledImport
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def read(imp: ScheduledImport) -> ScheduledImport:
    """The import as a request reads it before it saves (get_object)."""
    return ScheduledImport.objects.get(pk=imp.pk)


def test_an_edit_saved_after_another_keeps_the_others_fields(alice):
    # Given an import two clients read
    imp = make_import(alice, SOURCE, schedule_type="cron", cron_expression="30 2 * * *",
                      interval_seconds=None)  # fmt: skip
    first, second = read(imp), read(imp)

    # When one changes its schedule, then the other its description
    services.update_import(
        first, schedule_type="interval", interval_seconds=900, cron_expression=""
    )
    services.update_import(second, description="nightly prices")

    # Then both changes hold, and the beat entry is the interval's
    now = read(imp)
    assert (now.schedule_type, now.interval_seconds, now.description) == (
        "interval", 900, "nightly prices"
    )  # fmt: skip
    assert PeriodicTask.objects.get(pk=now.periodic_task_id).interval is not None


def test_a_pause_is_not_undone_by_an_edit_that_read_the_import_before_it(alice):
    imp = make_import(alice, SOURCE)
    editing = read(imp)

    paused = services.pause_import(read(imp))
    services.update_import(editing, description="x")

    now = read(imp)
    assert paused.status == "paused" and (now.status, now.description) == ("paused", "x")
    assert now.next_run_at is None
    assert not PeriodicTask.objects.get(pk=now.periodic_task_id).enabled
    # ... and the caller's own instance is the import as it is now
    assert (editing.status, editing.description) == ("paused", "x")


def test_an_admin_save_keeps_a_pause_committed_since_the_form_was_posted(
    client, alice, django_user_model, monkeypatch
):
    # The admin's save wrote every column as it had read them: status too, which its form does
    # not show, and the import fired on after a pause answered 200
    from schedules.admin import ScheduledImportAdmin
    from tests.test_admin_imports import CHANGELIST, form_data

    client.force_login(django_user_model.objects.create_superuser("root", "r@x.org", "x"))
    imp = make_import(alice, SOURCE)
    save = ScheduledImportAdmin.save_model

    def paused_meanwhile(self, request, obj, form, change):
        services.pause_import(read(imp))  # the owner's pause, between the form's read and save
        return save(self, request, obj, form, change)

    monkeypatch.setattr(ScheduledImportAdmin, "save_model", paused_meanwhile)
    response = client.post(f"{CHANGELIST}{imp.pk}/change/", form_data(imp, description="typo"))

    assert response.status_code == 302
    now = read(imp)
    assert (now.status, now.description) == ("paused", "typo")
    assert not PeriodicTask.objects.get(pk=now.periodic_task_id).enabled


def test_a_next_delivery_is_not_queued_for_an_import_paused_while_its_folder_was_read(alice):
    # The drain read the import active, looked at the folder, and queued the next delivery's
    # run after the owner's pause (or cancel) had been answered
    imp = make_import(alice, SOURCE)
    looked = read(imp)
    services.pause_import(read(imp))

    with pytest.raises(services.ImportNotActive):
        services.queue_next_delivery(looked, after=0, path="/srv/drop/alice/p_2.csv")
    assert not imp.runs.exists()
