from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from crunchclient.cli.arguments import add_server_arguments
from crunchclient.management.base import ClientCommand
from crunchclient.terminal import entry, remote


class Command(ClientCommand):
    help = "Add a dataset to a project and print its slug (django-crunch 0.1's add-dataset)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="The slug of the project.")
        parser.add_argument("name", help="The name of the new dataset.")
        parser.add_argument("--description", default="", help="A brief description.")
        parser.add_argument("--details", default="", help="A long description in Markdown.")
        parser.add_argument(
            "--base-file-path", default="", metavar="FOLDER",
            help="The dataset's folder in storage (default crunch/<project>/<dataset>).",
        )  # fmt: skip
        add_server_arguments(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        slug = entry.add_dataset(
            remote.connect(opts), opts["project"], opts["name"],
            description=opts["description"], details=opts["details"],
            base_file_path=opts["base_file_path"],
        )  # fmt: skip
        self.stdout.write(slug)
