from __future__ import annotations

from django.apps import AppConfig


class CrunchClientConfig(AppConfig):
    name = "crunchclient"
    verbose_name = "Crunch client"
