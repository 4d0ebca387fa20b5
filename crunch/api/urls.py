from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from rest_framework import routers

from crunch.api import files, notifications, results, runs, views

router = routers.DefaultRouter()
# A worker's calls first: each request tries the patterns in turn.
router.register("statuses", runs.StatusViewSet, basename="status")
router.register("claims", runs.ClaimViewSet, basename="claim")
router.register("projects", views.ProjectViewSet, basename="project")
router.register(
    r"projects/(?P<slug>[^/.]+)/notifications",
    notifications.NotificationViewSet,
    basename="project-notification",
)
router.register("datasets", views.DatasetViewSet, basename="dataset")
router.register("items", views.ItemViewSet, basename="item")
router.register(
    r"attributes/(?P<kind>[a-z-]+)", views.TypedAttributeViewSet, basename="attribute-kind"
)
router.register("attributes", views.AttributeViewSet, basename="attribute")

# A dataset's files through the server (crunch.api.files).
DATASET_FILES = [
    path("datasets/<str:slug>/manifest/", files.ManifestView.as_view(), name="dataset-manifest"),
    path("datasets/<str:slug>/links/", files.LinksView.as_view(), name="dataset-links"),
    path("datasets/<str:slug>/complete/", files.CompleteView.as_view(), name="dataset-complete"),
    path("datasets/<str:slug>/bundle/", files.BundleView.as_view(), name="dataset-bundle"),
    path("datasets/<str:slug>/checksums/", files.ChecksumsView.as_view(), name="dataset-checksums"),
    path(
        "datasets/<str:slug>/files/<path:path>",
        files.FileView.as_view(),
        name="dataset-stored-file",
    ),
]

urlpatterns = [
    path("next/", views.NextView.as_view(), name="next"),
    *DATASET_FILES,
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("projects/<str:slug>/results/", results.ResultsView.as_view(), name="project-results"),
    *router.urls,
]
