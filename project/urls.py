from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found
from django.views.generic import RedirectView

from schedules import dashboard, metrics

from . import views

urlpatterns = [
    path("", RedirectView.as_view(url="/dashboard/"), name="home"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("schedules.api.urls")),
    path("dashboard/", dashboard.index, name="dashboard"),
    path("dashboard/live.json", dashboard.live, name="dashboard-live"),
    path("dashboard/health.json", dashboard.health, name="dashboard-health"),
    path("demo/<str:name>", views.demo_file, name="demo-file"),
    path("metrics", metrics.metrics, name="metrics"),
]


def handler404(request: HttpRequest, exception: Exception):
    """API clients get the API's error shape for unknown paths too; people get the page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)
