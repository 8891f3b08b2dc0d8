from django.contrib import admin

from .models import Dataset, ImportRun, Record, ScheduledImport


@admin.register(ScheduledImport)
class ScheduledImportAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "owner",
        "schedule_description",
        "status",
        "last_run_status",
        "next_run_at",
    )
    list_filter = ("status", "schedule_type")
    search_fields = ("name", "description", "source_url")


@admin.register(ImportRun)
class ImportRunAdmin(admin.ModelAdmin):
    list_display = ("id", "scheduled_import", "trigger", "status", "queued_at", "duration_ms")
    list_filter = ("status", "trigger")


admin.site.register(Dataset)
admin.site.register(Record)
