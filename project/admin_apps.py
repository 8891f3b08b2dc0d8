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
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.core import checks
from django.http import HttpRequest, HttpResponse


class AdminServedConfig(SimpleAdminConfig):
    default_site = "project.admin_apps.ImportbeatAdminSite"

    def ready(self) -> None:
        checks.register(check_dependencies, checks.Tags.admin)
        checks.register(check_discovered_admin, checks.Tags.admin)


def check_discovered_admin(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """Django's checks of every ModelAdmin, once the admin modules are imported."""
    admin.autodiscover()
    return check_admin_app(app_configs, **kwargs)


class ImportbeatAdminSite(admin.AdminSite):
    """Django's admin site, whose autocomplete labels a result as its ModelAdmin says."""

    def autocomplete_view(self, request: HttpRequest) -> HttpResponse:
        return LabelledAutocompleteJsonView.as_view(admin_site=self)(request)


class LabelledAutocompleteJsonView(AutocompleteJsonView):
    """A ModelAdmin's `autocomplete_label(obj)`, where it has one, names each result: two
    users' datasets called "sales" were two results of one name."""

    def serialize_result(self, obj: Any, to_field_name: str) -> dict[str, Any]:
        result = super().serialize_result(obj, to_field_name)
        label = getattr(self.model_admin, "autocomplete_label", None)
        return {**result, "text": label(obj)} if label is not None else result
