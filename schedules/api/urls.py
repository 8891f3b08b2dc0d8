"""`/api/v1/` routes (SPEC section 5)."""

from django.urls import include, path, re_path
from rest_framework.routers import DefaultRouter

from . import auth, views
from .schema_views import DocsView, SchemaView

router = DefaultRouter()
router.include_root_view = False
# SPEC writes collections with a slash (`/imports/`) and actions without (`/imports/1/run`):
# accept both everywhere rather than redirect a POST (every route here: `/?`).
router.trailing_slash = "/?"
router.register("imports", views.ImportViewSet, basename="import")
router.register("runs", views.RunViewSet, basename="run")
router.register("datasets", views.DatasetViewSet, basename="dataset")

app_name = "api"
urlpatterns = [
    re_path(r"^auth/token/?$", auth.TokenView.as_view(), name="token"),
    re_path(r"^auth/logout/?$", auth.LogoutView.as_view(), name="logout"),
    re_path(r"^auth/logoutall/?$", auth.LogoutAllView.as_view(), name="logoutall"),
    re_path(r"^health/?$", views.HealthView.as_view(), name="health"),
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
    re_path(r"^schema/?$", SchemaView.as_view(), name="schema"),
    re_path(r"^docs/?$", DocsView.as_view(url_name="api:schema"), name="docs"),
    path("", include(router.urls)),
]
