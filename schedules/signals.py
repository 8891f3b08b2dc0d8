"""Deleting an import, however it is deleted (admin, API, queryset), removes its beat entry;
saving one whose credential was replaced or removed, however it is saved (admin, API, command,
code), has the old credential hidden in the runs saved under it."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import replaced_credentials
from .models import ScheduledImport


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
