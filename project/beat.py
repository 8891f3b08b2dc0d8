"""The beat scheduler: django-celery-beat's database scheduler, stamping each import dispatch
with the tick it stands for, so that a tick can be recognised (and refused) if sent twice."""

from django_celery_beat.schedulers import DatabaseScheduler

DISPATCH_TASK = "importbeat.dispatch_scheduled_import"


class ImportScheduler(DatabaseScheduler):
    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        if entry.task != DISPATCH_TASK:
            return super().apply_async(entry, producer, advance, **kwargs)
        from schedules.models import ScheduledImport

        # The tick is decided now, when beat fires, not when a worker gets to the message.
        imp = ScheduledImport.objects.filter(pk=entry.args[0]).first()
        entry = self.reserve(entry) if advance else entry
        if imp is not None:
            tick = imp.tick_for(self.app.now())
            entry.kwargs = {**(entry.kwargs or {}), "scheduled_for": tick.isoformat()}
        return super().apply_async(entry, producer, advance=False, **kwargs)
