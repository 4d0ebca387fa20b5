from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandParser

from crunchclient.cli.arguments import add_retry_policy, add_server_arguments
from crunchclient.management.base import ClientCommand
from crunchclient.settings import kinds
from crunchclient.terminal import entry, projects, remote


class Command(ClientCommand):
    help = "Create a project on the server and print its slug (django-crunch 0.1's add-project)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="The name of the new project.")
        parser.add_argument("--description", default="", help="A brief description.")
        parser.add_argument("--details", default="", help="A long description in Markdown.")
        parser.add_argument(
            "--workflow", type=Path, metavar="FILE",
            help="A file with the workflow every dataset runs (script, Snakefile, executable).",
        )  # fmt: skip
        parser.add_argument(
            "--kind", choices=tuple(kinds.KINDS),
            help="How the workflow runs (default: snakemake for a Snakefile, else script).",
        )  # fmt: skip
        parser.add_argument(
            "--container", metavar="IMAGE", default="",
            help="The image the workflow runs in: docker://NAME:TAG, a .sif path, or a "
            "Charliecloud image directory or ch-image name.",
        )  # fmt: skip
        parser.add_argument("--public", action="store_true", help="Anyone may view the project.")
        add_retry_policy(parser)
        add_server_arguments(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        retry = tuple(projects.parse_retry(text) for text in opts["retry"])
        slug = entry.add_project(
            remote.connect(opts), opts["name"], description=opts["description"],
            details=opts["details"], workflow=opts["workflow"], kind=opts["kind"],
            public=opts["public"], container=opts["container"],
            retry_policy=projects.policy_with({}, retry),
        )  # fmt: skip
        self.stdout.write(slug)
