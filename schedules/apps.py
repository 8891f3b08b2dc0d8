from django.apps import AppConfig


class SchedulesConfig(AppConfig):
    name = "schedules"
    verbose_name = "Scheduled imports"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from common.postgres import check_new_connection

        from . import history, signals  # noqa: F401  (signals connects the beat-entry clean-up)

        history.register()

        # A server older than PostgreSQL 14 is refused on the first connection of any process.
        connection_created.connect(check_new_connection, dispatch_uid="importbeat-pg-version")
