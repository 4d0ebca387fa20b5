"""The client's secrets: which settings hold them, and keeping them out of what it
writes (notes, messages, the workflow's log) and out of the workflow's environment."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crunchclient.settings.config import ClientConfig

logger = logging.getLogger(__name__)

SECRET_NAME = re.compile(r"key|secret|passw|token|credential|connection_string", re.IGNORECASE)
"""Settings whose values are secrets: kept out of the workflow, its log and messages."""

MASK_MIN = 8  # secrets this long or longer are masked in the output; shorter ones would
# mask ordinary words (the environment loses them all, whatever their length)
HIDDEN = ("CRUNCH_TOKEN",)
HIDDEN_PREFIXES = ("AWS_",)
POINTERS = ("_FILE", "_PATH", "_BUNDLE", "_DIR", "_URL", "_URI")
"""Name endings of variables that say where something is (AWS_SHARED_CREDENTIALS_FILE):
whatever the rest of the name says, their value is no secret."""
TOLD: set[str] = set()
"""The names the notices of this process named already: each is said once per loop."""


def secret_values(*, standalone: bool) -> set[str]:
    """The values of the settings that look secret: storage keys, passwords, tokens.

    ``standalone``: Django was configured by the client (its SECRET_KEY is no secret).
    """
    from django.conf import settings

    found: set[str] = set()

    def collect(mapping: Any) -> None:
        if not isinstance(mapping, dict):
            return
        for key, value in mapping.items():
            if isinstance(value, str) and value.strip() and SECRET_NAME.search(str(key)):
                found.add(value)

    for params in (getattr(settings, "STORAGES", None) or {}).values():
        if isinstance(params, dict):
            collect(params.get("OPTIONS"))
    for database in (getattr(settings, "DATABASES", None) or {}).values():
        collect(database)
    names = [name for name in dir(settings) if name.isupper()]
    if standalone:
        names.remove("SECRET_KEY")  # ours, not a secret: see settings_from_values()
    collect({name: getattr(settings, name, None) for name in names})
    return found


def redact(text: str, secrets: set[str] | frozenset[str]) -> str:
    """The text with every secret in it replaced by ``***`` (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, "***")
    return text


def workflow_env(config: ClientConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """The client's environment without its secrets, unless passed with --pass-env.

    The client's other AWS_* settings (region, profile, CA bundle) stay out too, but only
    the secrets are named, once per process: the notice is not repeated per dataset.
    """
    keep = set(config.pass_env)
    long = [secret for secret in config.secrets if len(secret) >= MASK_MIN]
    env: dict[str, str] = {}
    secrets: list[str] = []
    settings: list[str] = []
    for name, value in environ.items():
        holds = name in HIDDEN or value in config.secrets or any(part in value for part in long)
        if name in keep or not (holds or name.startswith(HIDDEN_PREFIXES)):
            env[name] = value
        elif holds or (SECRET_NAME.search(name) and not name.endswith(POINTERS)):
            secrets.append(name)  # AWS_SECRET_ACCESS_KEY, not AWS_SHARED_CREDENTIALS_FILE
        else:
            settings.append(name)
    if told := once(secrets):
        logger.info("Not giving the workflow %s (--pass-env NAME gives it one)", ", ".join(told))
    if told := once(settings):
        logger.debug("Not giving the workflow the client's settings %s either", ", ".join(told))
    for name in once(keep - set(environ)):
        logger.warning("--pass-env %s: the client has no such environment variable", name)
    return env


def once(names: Iterable[str]) -> list[str]:
    """The names not told before in this process, remembered as told now."""
    new = sorted(set(names) - TOLD)
    TOLD.update(new)
    return new


class Masker:
    """Replaces the client's secrets in the workflow's output by ``***``."""

    def __init__(self, secrets: frozenset[str]) -> None:
        self.secrets = sorted(
            (s.encode() for s in secrets if len(s) >= MASK_MIN), key=len, reverse=True
        )

    def __call__(self, data: bytes) -> bytes:
        for secret in self.secrets:
            if secret in data:
                data = data.replace(secret, b"***")
        return data
