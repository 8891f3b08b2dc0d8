"""Django's user admin, whose deletion counts what goes along instead of listing it.

A user takes their imports, runs, datasets and records along (schedules.signals). Django's
confirmation listed each of them as a link: 17 MB and 20 s for a user with a dataset of 200,000
records, and past gunicorn's timeout at millions, so that such a user could not be deleted at
all (the deletion's POST builds the same list first).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Sum
from django.http import HttpRequest

from .admin_deletion import counted_deletion
from .admin_lists import RefusesNulSearch
from .models import Dataset, ImportRun

User = get_user_model()


class ImportbeatUserAdmin(RefusesNulSearch, UserAdmin):
    def get_deleted_objects(self, objs: Any, request: HttpRequest):
        to_delete, model_count, perms_needed, protected = counted_deletion(self, objs, request)
        # What goes with their imports and datasets, counted in one statement each.
        owners = [obj.pk for obj in objs]
        runs = ImportRun.objects.filter(scheduled_import__owner__in=owners).count()
        datasets = Dataset.objects.filter(owner__in=owners)
        records = datasets.aggregate(n=Sum("record_count"))["n"] or 0
        for name, number in ((ImportRun._meta.verbose_name_plural, runs), ("records", records)):
            if number:
                model_count[name] = number
        return to_delete, model_count, perms_needed, protected


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, ImportbeatUserAdmin)
