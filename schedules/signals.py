"""Deleting an import, however it is deleted (admin, API, queryset), removes its beat entry;
saving one whose credential was replaced or removed, however it is saved (admin, API, command,
code), has the old credential hidden in the runs saved under it; deleting a user takes their
imports, datasets and runs along, the runs in a few statements."""

from django.conf import settings
from django.db.models.signals import post_delete, post_save, pre_delete
from django.dispatch import receiver

from . import replaced_credentials
from .models import ImportRun, ScheduledImport


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL)
def delete_the_users_runs(sender, instance, **kwargs) -> None:
    # Their imports and datasets go with them (CASCADE, and RESTRICT from an import to its
    # dataset: the user could not be deleted at all while PROTECT held it). Their runs first,
    # in a few statements, as an import's deletion takes them: Django's cascade reads each run.
    from .services import delete_runs

    delete_runs(ImportRun.objects.filter(scheduled_import__owner=instance))


@receiver(post_save, sender=ScheduledImport)
def hide_replaced_credential(sender, instance: ScheduledImport, **kwargs) -> None:
    # In the save's own transaction (ScheduledImport.save): the old credential is kept if and
    # only if the change commits.
    if replaced := instance.take_replaced_credential():
        replaced_credentials.remember(instance, replaced)


@receiver(post_delete, sender=ScheduledImport)
def delete_periodic_task(sender, instance: ScheduledImport, **kwargs) -> None:
    from django_celery_beat.models import PeriodicTask

    if instance.periodic_task_id:
        PeriodicTask.objects.filter(pk=instance.periodic_task_id).delete()
