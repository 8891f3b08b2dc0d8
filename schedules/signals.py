"""Deleting an import, however it is deleted (admin, API, queryset), removes its beat entry;
saving one whose credential was replaced or removed, however it is saved (admin, API, command,
code), has the old credential hidden in the runs saved under it; deleting a user takes their
imports, datasets and runs along, the runs in a few statements; deactivating a user pauses
their active imports and cancels their waiting runs."""

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save
from django.dispatch import receiver

from common import database_clock

from . import history, replaced_credentials
from .models import (
    Dataset,
    ImportRun,
    ScheduledImport,
    delete_unused_schedule_rows,
    ticks_missed_at_change,
)


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL)
def delete_the_users_runs(sender, instance, **kwargs) -> None:
    # Their imports and datasets go with them (CASCADE, and RESTRICT from an import to its
    # dataset: the user could not be deleted at all while PROTECT held it). Their runs first,
    # in a few statements, as an import's deletion takes them: Django's cascade reads each run.
    from .services import delete_records_of_datasets, delete_runs, lock_datasets

    # Their datasets first, as a merge and a key edit take them before the import: the
    # imports' rows locked first, a key edit of one at the same moment deadlocked (review).
    lock_datasets(Dataset.objects.filter(owner=instance).values_list("pk", flat=True))
    delete_runs(ImportRun.objects.filter(scheduled_import__owner=instance))
    # Their records a range of ids at a time, as a dataset's deletion deletes them: Django's
    # cascade deleted millions in one statement, past the web's statement limit (a 500, and
    # nothing deleted).
    delete_records_of_datasets(Dataset.objects.filter(owner=instance).values_list("pk", flat=True))


@receiver(post_save, sender=ScheduledImport)
def hide_replaced_credential(sender, instance: ScheduledImport, **kwargs) -> None:
    # In the save's own transaction (ScheduledImport.save): the old credential is kept if and
    # only if the change commits.
    if replaced := instance.take_replaced_credential():
        replaced_credentials.remember(instance, replaced)
        # Its kind and host are in the change, not the secret: one token swapped for another of
        # the same kind, for the same host, left no trace in the import's history.
        event = "credential replaced" if instance.credential_secret else "credential removed"
        history.record_event(instance, event, None)


@receiver(ticks_missed_at_change, sender=ScheduledImport)
def tell_owners_of_ticks_missed_at_change(sender, missed: dict, **kwargs) -> None:
    """Owners hear of the late streak a change began (its ticks missed before it) as they hear
    of beat's: in one message to a worker (schedules.dispatch)."""
    from .dispatch import _tell_owners_late

    _tell_owners_late(sorted(missed))


@receiver(post_delete, sender=ScheduledImport)
def delete_periodic_task(sender, instance: ScheduledImport, **kwargs) -> None:
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    if instance.periodic_task_id:
        entry = PeriodicTask.objects.filter(pk=instance.periodic_task_id)
        rows = entry.values_list("crontab_id", "interval_id").first()
        entry.delete()
        # Its schedule row too, unless another entry uses it: left, every deleted import's
        # stayed in the beat admin's lists and forms for good (growth hunt).
        if rows:
            delete_unused_schedule_rows(CrontabSchedule, [rows[0]])
            delete_unused_schedule_rows(IntervalSchedule, [rows[1]])


@receiver(pre_save, sender=settings.AUTH_USER_MODEL)
def pause_the_imports_of_a_deactivated_user(sender, instance, **kwargs) -> None:
    # Unticking "active" is Django's way to close an account without deleting it. Its owner
    # can no longer sign in or use a token, so cannot pause them: their imports went on
    # fetching, writing and mailing them for good. They wait, paused, for the account to be
    # reactivated and their owner to resume them; their runs still waiting (queued, or
    # retrying) are cancelled, as no new one is queued: a retry fetched and wrote after it.
    if instance.pk is None or instance.is_active:
        return
    was_active = sender.objects.filter(pk=instance.pk, is_active=True).exists()
    if was_active:
        from . import services
        from .statuses import change_statuses

        theirs = ScheduledImport.objects.filter(owner_id=instance.pk)
        active = ScheduledImport.Status.ACTIVE
        with transaction.atomic():
            change_statuses(
                theirs.filter(status=active).values_list("pk", flat=True),
                ScheduledImport.Status.PAUSED,
                from_statuses=(active,),
                skip_scheduled_runs=False,  # cancelled below, saying why
            )
            services.end_waiting_runs(
                list(theirs.values_list("pk", flat=True)),
                database_clock.now(),
                why=services.OWNER_DEACTIVATED,
            )
