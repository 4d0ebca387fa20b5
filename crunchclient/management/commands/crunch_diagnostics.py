from __future__ import annotations

from typing import Any

from crunchclient.management.base import ClientCommand
from crunchclient.worker import diagnostics


class Command(ClientCommand):
    help = "Print this machine's diagnostics: what each status sends (django-crunch 0.1's)."

    def handle(self, *args: Any, **opts: Any) -> None:
        for key, value in diagnostics.collect().to_wire().items():
            self.stdout.write(f"{key}: {value}")
