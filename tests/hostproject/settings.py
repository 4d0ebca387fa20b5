"""A lab's own Django project: crunch's server under /lab/, its client in the same process.

Nothing of the testproject: its own database file, storage folder and URLs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

HERE = Path(tempfile.gettempdir()) / f"crunch-hostproject-{os.getpid()}"

SECRET_KEY = "hostproject-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "crunch",
    "crunchclient",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "tests.hostproject.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(HERE.with_suffix(".sqlite3")),
        "TEST": {"NAME": str(HERE.with_suffix(".test.sqlite3"))},
    }
}
if os.environ.get("DATABASE_URL"):
    import dj_database_url

    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
    # A test database of its own: the suite that starts this project has one on the same server.
    DATABASES["default"]["TEST"] = {"NAME": f"test_hostproject_{os.getpid()}"}
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": os.environ.get("HOSTPROJECT_MEDIA", str(HERE / "media"))},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_URL = "/static/"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
CRUNCH_DEFAULT_RETRY_DELAY = 0
