from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections

from crunch.services.notifications import notify


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds.") from None
    if not 1 <= value <= 86400:
        raise argparse.ArgumentTypeError("Give between 1 and 86400 seconds.")
    return value


class Command(BaseCommand):
    help = (
        "Send the projects' notifications: find new events (finished, failed for good, "
        "failures spiking) and deliver the queued webhooks and e-mails, every few seconds "
        "until SIGTERM or SIGINT. Run it beside the server."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--once", action="store_true", help="one round, then exit")
        parser.add_argument(
            "--every", type=seconds, default=30.0, metavar="SECONDS",
            help="seconds between rounds (default 30)",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        if not options["once"]:
            for number in (signal.SIGTERM, signal.SIGINT):
                signal.signal(number, lambda _n, _f: stop.set())
            if options["verbosity"] >= 1:
                self.stdout.write(f"Notifying every {options['every']:g} s until SIGTERM.")
                self.stdout.flush()
        while True:
            close_old_connections()
            try:
                queued, sent = notify()
            except DatabaseError as exc:  # the database restarting: try again next round
                if options["once"]:
                    raise CommandError(f"The database refused: {exc}".strip()) from None
                self.stderr.write(f"The database refused, trying again: {exc}".strip())
                if stop.wait(options["every"]):
                    return
                continue
            if options["verbosity"] >= 1 and (queued or sent.delivered or sent.retried
                                               or sent.given_up or options["once"]):  # fmt: skip
                self.stdout.write(
                    f"{queued} queued, {sent.delivered} delivered, {sent.retried} to retry, "
                    f"{sent.given_up} given up."
                )
            if options["once"] or stop.wait(options["every"]):
                return
