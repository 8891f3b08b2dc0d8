from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from django.views.defaults import page_not_found
from django.views.defaults import server_error as server_error_page
from django.views.generic import RedirectView

from schedules import dashboard, metrics
from schedules.api.middleware import server_error

from . import views

# The ModelAdmins are found here, where the admin is served (project/admin_apps.py).
admin.autodiscover()

urlpatterns = [
    path("", RedirectView.as_view(url="/dashboard/"), name="home"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("schedules.api.urls")),
    # Anything else under /api/ is the API's JSON 404, also with DEBUG on (whose 404 is HTML).
    re_path(r"^api/", lambda request: api_not_found(request)),
    path("dashboard/", dashboard.index, name="dashboard"),
    path("dashboard/live.json", dashboard.live, name="dashboard-live"),
    path("dashboard/health.json", dashboard.health, name="dashboard-health"),
    path("demo/<str:name>", views.demo_file, name="demo-file"),
    path("metrics", metrics.metrics, name="metrics"),
]


def api_not_found(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"detail": "Not found."}, status=404)


def handler500(request: HttpRequest):
    """A crash outside a view (a middleware): JSON under /api/ too."""
    if request.path.startswith("/api/"):
        return server_error()
    return server_error_page(request)


def handler404(request: HttpRequest, exception: Exception):
    """API clients get the API's error shape for unknown paths too; people get the page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)
