from __future__ import annotations

from django.urls import include, path

from crunch import views

app_name = "crunch"
urlpatterns = [
    path("", views.project_list, name="project-list"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("datasets/<str:slug>/", views.dataset_detail, name="dataset-detail"),
    path("datasets/<str:slug>/files/<path:path>", views.dataset_file, name="dataset-file"),
    path("api/", include(("crunch.api.urls", "api"))),
]
