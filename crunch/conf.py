"""Every CRUNCH_* setting of the server, typed, with its default.

Values are read at each access so ``override_settings`` works in tests.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from crunch import constants


class CrunchSettings:
    DEFAULT_MAX_ATTEMPTS: int = 3
    """Attempts a new project gives each dataset before it stays failed."""

    LEASE_SECONDS: int = constants.LEASE_SECONDS  # seconds a claim lives without a heartbeat
    """A claim not renewed within this time returns its dataset to pending."""

    DEFAULT_RETRY_DELAY: int = 60  # seconds
    """A new project's wait before a failed dataset is handed out again (doubling per attempt)."""

    STATS_RECENT_SECONDS: int = 3600  # seconds of history used for throughput

    PAGE_REFRESH_SECONDS: int = 5
    """Seconds between refreshes of an open page's figures."""

    DELETE_STORED_FILES: bool = True
    """Deleting a dataset (or its project) deletes its folder in storage once committed."""

    NOTE_MAX_BYTES: int = 16 * 1024
    """The most a status's note keeps (in UTF-8); a longer one keeps its first and last
    halves with a line saying how much was cut between them. A dataset page shows up to
    300 statuses; the crunch client sends at most 8 KiB."""

    TOKEN_FAILURE_RATE: str | None = "30/min"
    """Failed token authentications allowed per client address (DRF's rate syntax), past
    which the address's tokens are refused with 429 for the rest of the window; None: off."""

    LINK_SECONDS: int = 900
    """Longest life of a signed link to a dataset's file in S3 (``--transfer server``); a
    claim's link never outlives its lease. A client asks again for a link that expired."""

    PRESIGN: bool = True
    """With a storage that signs URLs (S3), nodes without storage keys move files straight
    to and from it through signed links; False sends the bytes through the server instead
    (for a bucket that compute nodes cannot reach)."""

    SENDFILE: str = ""
    """Who sends a downloaded file's bytes on local storage: "" (the WSGI server, with
    sendfile where it offers it), "x-accel-redirect" (nginx, see SENDFILE_PREFIX) or
    "x-sendfile" (Apache's mod_xsendfile, lighttpd)."""

    SENDFILE_PREFIX: str = "/protected/"
    """nginx's internal location that maps to MEDIA_ROOT, for SENDFILE="x-accel-redirect"."""

    SITE_URL: str = ""
    """The site's address as people reach it (e.g. https://crunch.example.org), so that
    notifications link to its pages; empty: they give paths only."""

    NOTIFY_PRIVATE_ADDRESSES: bool = False
    """Webhooks may be sent to loopback, private and link-local addresses (an intranet's
    chat server); off by default, so a maintainer cannot make the server call its own
    network's services."""

    NOTIFY_TIMEOUT: float = 10.0
    """Seconds a webhook's receiver has to answer."""

    NOTIFY_MAX_ATTEMPTS: int = 10
    """Tries of one delivery before it is given up (shown in the admin)."""

    NOTIFY_RETRY_DELAY: int = 30
    """Seconds before a failed delivery's second try; doubling per try up to NOTIFY_RETRY_MAX."""

    NOTIFY_RETRY_MAX: int = 3600
    """The longest wait between two tries of a delivery, in seconds."""

    NOTIFY_SPIKE_RUNS: int = 20
    """The last runs (Fails and Upload Successes) a spike is judged on."""

    NOTIFY_SPIKE_RATIO: float = 0.5
    """The share of those runs that failed at which 'spike' fires."""

    NOTIFY_SPIKE_SECONDS: int = 3600
    """'spike' fires at most once in this time per project."""

    NOTIFY_FAILED_LISTED: int = 50
    """The most datasets one 'failed' event names (its count covers them all)."""

    def __getattribute__(self, name: str) -> Any:
        if name.isupper():
            return getattr(settings, f"CRUNCH_{name}", object.__getattribute__(self, name))
        return object.__getattribute__(self, name)


crunch_settings = CrunchSettings()
