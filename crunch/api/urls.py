from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from rest_framework import routers

from crunch.api import runs, views

router = routers.DefaultRouter()
# A worker's calls first: each request tries the patterns in turn.
router.register("statuses", runs.StatusViewSet, basename="status")
router.register("claims", runs.ClaimViewSet, basename="claim")
router.register("projects", views.ProjectViewSet, basename="project")
router.register("datasets", views.DatasetViewSet, basename="dataset")
router.register("items", views.ItemViewSet, basename="item")
router.register(
    r"attributes/(?P<kind>[a-z-]+)", views.TypedAttributeViewSet, basename="attribute-kind"
)
router.register("attributes", views.AttributeViewSet, basename="attribute")

urlpatterns = [
    path("next/", views.NextView.as_view(), name="next"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    *router.urls,
]
