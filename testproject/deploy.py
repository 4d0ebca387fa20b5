"""Settings for a deployment: PostgreSQL, S3, gunicorn behind an HTTPS proxy.

docs/how-to/deploying.md explains each; ``python manage.py check --deploy`` with
``DJANGO_SETTINGS_MODULE=testproject.deploy`` reports no issues (tests/server/test_deploy.py).
A host project copies the lines below the import into its own settings. Everything secret
or site-specific comes from the environment, and a missing variable stops the server at
start with its name (a KeyError) rather than running with a default.
"""

from __future__ import annotations

import os

from testproject.settings import *  # noqa: F403 (apps, middleware, templates, REST_FRAMEWORK)

DEBUG = False
SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]  # 50+ random characters, kept out of the repo
ALLOWED_HOSTS = os.environ["DJANGO_ALLOWED_HOSTS"].split()  # e.g. "crunch.example.org"
CSRF_TRUSTED_ORIGINS = [f"https://{host}" for host in ALLOWED_HOSTS]

# PostgreSQL, e.g. DATABASE_URL=postgres://crunch:PASSWORD@db.example.org:5432/crunch
DATABASES = {
    "default": url_database(  # noqa: F405 (from testproject.settings)
        os.environ["DATABASE_URL"], conn_max_age=600, conn_health_checks=True
    )
}

# Datasets' files on S3 (django-storages); credentials from the usual AWS_* variables or
# the instance's role. The clients read the same bucket with their own storage settings.
STORAGES = {
    "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ["AWS_STORAGE_BUCKET_NAME"],
            "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL") or None,
            "file_overwrite": True,
            "querystring_auth": True,  # private files: links that expire
        },
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}
# `python manage.py collectstatic` writes here; the proxy serves it at /static/.
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT", "/srv/crunch/static")

# gunicorn listens on 127.0.0.1 behind a proxy that ends TLS and sets X-Forwarded-Proto;
# trust that header only from such a proxy (one that overwrites it on every request).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = 60 * 60 * 24 * 365
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_REFERRER_POLICY = "same-origin"
# The pages' Content-Security-Policy comes from crunch.middleware (in MIDDLEWARE already).
