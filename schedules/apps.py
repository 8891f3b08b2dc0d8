from django.apps import AppConfig


class SchedulesConfig(AppConfig):
    name = "schedules"
    verbose_name = "Scheduled imports"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (connects the beat-entry clean-up)
