from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from crunch.services.claims import reclaim_expired


class Command(BaseCommand):
    help = (
        "Return datasets whose claim lease expired to pending (claims do this by themselves too)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"{reclaim_expired()} expired claim(s) reclaimed.")
