"""`/api/v1/` routes (SPEC section 5)."""

from django.urls import include, path, re_path
from rest_framework.routers import DefaultRouter

from . import auth, views
from .schema_views import DocsView, SchemaView

router = DefaultRouter()
router.include_root_view = False
# SPEC writes collections with a slash (`/imports/`) and actions without (`/imports/1/run`):
# accept both everywhere rather than redirect a POST.
router.trailing_slash = "/?"
router.register("imports", views.ImportViewSet, basename="import")
router.register("runs", views.RunViewSet, basename="run")
router.register("datasets", views.DatasetViewSet, basename="dataset")

app_name = "api"
urlpatterns = [
    path("auth/token", auth.TokenView.as_view(), name="token"),
    path("auth/logout", auth.LogoutView.as_view(), name="logout"),
    path("auth/logoutall", auth.LogoutAllView.as_view(), name="logoutall"),
    path("health", views.HealthView.as_view(), name="health"),
    re_path(r"^me/?$", views.MeView.as_view(), name="me"),
    re_path(r"^imports/(?P<pk>\d+)/runs/?$", views.ImportRunsView.as_view(), name="import-runs"),
    re_path(
        r"^datasets/(?P<name>[-a-zA-Z0-9_]+)/records/?$",
        views.RecordListView.as_view(),
        name="dataset-records",
    ),
    re_path(
        r"^datasets/(?P<name>[-a-zA-Z0-9_]+)/export/?$",
        views.RecordExportView.as_view(),
        name="dataset-export",
    ),
    path("schema/", SchemaView.as_view(), name="schema"),
    path("docs/", DocsView.as_view(url_name="api:schema"), name="docs"),
    path("", include(router.urls)),
]
