"""Deleting an import, however it is deleted (admin, API, queryset), removes its beat entry."""

from django.db.models.signals import post_delete
from django.dispatch import receiver

from .models import ScheduledImport


@receiver(post_delete, sender=ScheduledImport)
def delete_periodic_task(sender, instance: ScheduledImport, **kwargs) -> None:
    from django_celery_beat.models import PeriodicTask

    if instance.periodic_task_id:
        PeriodicTask.objects.filter(pk=instance.periodic_task_id).delete()
