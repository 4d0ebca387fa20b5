from __future__ import annotations

from django.urls import include, path

from crunch import views

app_name = "crunch"
urlpatterns = [
    path("", views.ProjectListView.as_view(), name="project-list"),
    path("projects/<slug:slug>/", views.ProjectDetailView.as_view(), name="project-detail"),
    path("datasets/<str:slug>/", views.DatasetDetailView.as_view(), name="dataset-detail"),
    path("api/", include(("crunch.api.urls", "api"))),
]
