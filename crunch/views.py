"""HTML pages: progress and browsing (filled in by the pages work)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.views.generic import DetailView, ListView

from crunch.models import Dataset, Project


def visible_projects(user: Any) -> QuerySet[Project]:
    """Staff see every project; everyone else sees public ones."""
    projects = Project.objects.all()
    return projects if user.is_staff else projects.filter(is_public=True)


class ProjectListView(ListView):
    template_name = "crunch/project_list.html"

    def get_queryset(self) -> QuerySet[Project]:
        return visible_projects(self.request.user)


class ProjectDetailView(DetailView):
    template_name = "crunch/project_detail.html"

    def get_queryset(self) -> QuerySet[Project]:
        return visible_projects(self.request.user)


class DatasetDetailView(DetailView):
    template_name = "crunch/dataset_detail.html"

    def get_queryset(self) -> QuerySet[Dataset]:
        return Dataset.objects.filter(project__in=visible_projects(self.request.user))
