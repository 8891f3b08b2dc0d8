"""The Django admin, loaded where it is served rather than in every process.

Django's AdminConfig imports every app's admin module when the app registry starts: our admin
modules bring the API's pagination and Django REST framework along, which a worker, beat or a
management command never use (0.08 s of the 0.65 s `manage.py run_import` took to start, in
tests/bench/bench_import_speed.py). Here the admin modules are imported by the URLs
(project/urls.py), and by the system checks, which must see every ModelAdmin whichever of the
checks runs first.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import SimpleAdminConfig
from django.contrib.admin.checks import check_admin_app, check_dependencies
from django.core import checks


class AdminServedConfig(SimpleAdminConfig):
    def ready(self) -> None:
        checks.register(check_dependencies, checks.Tags.admin)
        checks.register(check_discovered_admin, checks.Tags.admin)


def check_discovered_admin(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """Django's checks of every ModelAdmin, once the admin modules are imported."""
    admin.autodiscover()
    return check_admin_app(app_configs, **kwargs)
