"""Settings of the small project used by the demo, the tests and the benchmarks.

SQLite and local storage by default. From the environment:
``DATABASE_URL`` (e.g. postgres://postgres@127.0.0.1:5432/test) switches the database;
``CRUNCH_STORAGE=s3`` with ``AWS_STORAGE_BUCKET_NAME``, ``AWS_S3_ENDPOINT_URL`` and the usual
AWS variables switches storage to S3; ``CRUNCH_MEDIA_ROOT`` moves local storage.
``DJANGO_DEBUG=1`` turns DEBUG on (the demo does). Settings for a real deployment:
testproject/deploy.py and docs/how-to/deploying.md.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import django

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "crunch-testproject-not-secret")
# Off unless asked for: the debug page shows settings and the environment to anyone.
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = [
    "127.0.0.1",
    "localhost",
    "testserver",
    *os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(),
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    # crunch no longer reads its keys (migration 0008 moves them to crunch tokens): kept to
    # test that move.
    "rest_framework.authtoken",
    "drf_spectacular",
    "crunch",
    "crunchclient",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "crunch.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its 429 page.
    "axes.middleware.AxesMiddleware",
]

# django-axes counts failed logins (the admin's and the pages' login form) per address and
# user name: after AXES_FAILURE_LIMIT of them that pair is refused, the right password too,
# until AXES_COOLOFF_TIME has passed; a success resets the count. Its backend comes first.
# Behind a proxy, tell it the client's address: AXES_IPWARE_PROXY_COUNT (with django-ipware)
# or AXES_CLIENT_IP_CALLABLE. API tokens are throttled by crunch itself (crunch/api/
# authentication.py), in the default cache: give a server of several processes a shared one.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = datetime.timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["ip_address", "username"]]
AXES_RESET_ON_SUCCESS = True

ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


CONN_MAX_AGE = int(os.environ.get("CRUNCH_CONN_MAX_AGE", "0"))
"""Seconds a worker keeps its database connection; 0 (a new one per request) in tests, whose
databases come and go. Servers want it long: connecting costs more than a claim."""


def sqlite_database(name: str | Path) -> dict[str, object]:
    """SQLite tuned for several clients: wait for locks, take the write lock up front."""
    options: dict[str, object] = {"timeout": 60}
    if django.VERSION >= (5, 1):
        options["transaction_mode"] = "IMMEDIATE"
        options["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": name,
        "OPTIONS": options,
        "CONN_MAX_AGE": CONN_MAX_AGE,
        # A file, not memory: the concurrency tests open several connections.
        "TEST": {"NAME": str(BASE_DIR / f".test-db-{os.getpid()}.sqlite3")},
    }


def url_database(url: str, **kwargs: Any) -> dict[str, Any]:
    """The database at ``url``; on PostgreSQL, statements prepared on the server after five uses.

    A worker's few statements run thousands of times a minute, and planning one costs
    PostgreSQL more than running it (15% of a dataset's time). Behind PgBouncer in
    transaction mode, set ``prepare_threshold`` to None: its connections change hands.
    """
    import dj_database_url

    database: dict[str, Any] = dict(dj_database_url.parse(url, **kwargs))
    if "postgresql" in str(database.get("ENGINE", "")):
        database["OPTIONS"] = {"server_side_binding": True, "prepare_threshold": 5}
    return database


DATABASES: dict[str, Mapping[str, object]]
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": url_database(os.environ["DATABASE_URL"], conn_max_age=CONN_MAX_AGE)}
else:
    DATABASES = {
        "default": sqlite_database(os.environ.get("CRUNCH_SQLITE", BASE_DIR / "db.sqlite3"))
    }

MEDIA_ROOT = os.environ.get("CRUNCH_MEDIA_ROOT", str(BASE_DIR / "media"))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

if os.environ.get("CRUNCH_STORAGE", "local") == "s3":
    DEFAULT_STORAGE: dict[str, object] = {"BACKEND": "storages.backends.s3.S3Storage"}
else:
    DEFAULT_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT, "base_url": MEDIA_URL},
    }
STORAGES: dict[str, dict[str, object]] = {
    "default": DEFAULT_STORAGE,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
AWS_STORAGE_BUCKET_NAME = os.environ.get("AWS_STORAGE_BUCKET_NAME", "")
AWS_S3_ENDPOINT_URL = os.environ.get("AWS_S3_ENDPOINT_URL") or None
AWS_S3_FILE_OVERWRITE = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "crunch.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["crunch.api.permissions.ProjectAccess"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "crunch.api.exceptions.exception_handler",
    # JSON and form bodies held to DATA_UPLOAD_MAX_MEMORY_SIZE (a JSON 413 past it).
    "DEFAULT_PARSER_CLASSES": [
        "crunch.api.parsers.JSONParser",
        "crunch.api.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
SPECTACULAR_SETTINGS = {"TITLE": "crunch API", "VERSION": "0.2.0"}

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CRUNCH_LEASE_SECONDS = int(os.environ.get("CRUNCH_LEASE_SECONDS", "300"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"crunch": {"handlers": ["console"], "level": "INFO"}},
}
