"""The domain logic: plain functions the API, the admin, the pages and other projects call.

The names below load on first use (PEP 562): they need the models, and this package is
imported while Django loads its apps (CrunchConfig.ready). ``explain`` is imported here:
it is the function, whose module has the same name (``from crunch.services.explain import
...``), and importing the module sets the package's attribute to the module unless the
function is bound after it. ``results`` likewise: ``crunch.services.results(project,
where=..., columns=..., sort=...)`` yields a project's typed result rows (the function
``rows`` of the module ``crunch.services.results``, which also has ``store``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crunch.lazy import exports

if TYPE_CHECKING:
    from crunch.services.claims import claim_dataset, claim_next, release, renew_lease
    from crunch.services.registration import register_datasets
    from crunch.services.retries import retry, retry_failed
    from crunch.services.stats import project_stats
    from crunch.services.statuses import record_status

EXPORTS = {
    "claim_next": "crunch.services.claims",
    "claim_dataset": "crunch.services.claims",
    "renew_lease": "crunch.services.claims",
    "release": "crunch.services.claims",
    "record_status": "crunch.services.statuses",
    "project_stats": "crunch.services.stats",
    "retry": "crunch.services.retries",
    "retry_failed": "crunch.services.retries",
    "register_datasets": "crunch.services.registration",
}
"""{public name: the module defining it}."""

__all__ = [
    "claim_dataset", "claim_next", "explain", "project_stats", "record_status",
    "register_datasets", "release", "renew_lease", "results", "retry", "retry_failed",
]  # fmt: skip


__getattr__, __dir__ = exports(__name__, EXPORTS)

from crunch.services.explain import explain  # noqa: E402  (after the lazy names: see above)
from crunch.services.results import rows as results  # noqa: E402  (the function: see above)
