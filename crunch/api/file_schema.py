"""What the OpenAPI schema says of ``crunch.api.files``: its bodies and answers.

The views check their input themselves (``transfers.clean_file_path``, ``links.write_sizes``)
so that every refusal is one line; these serializers only describe it.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from crunch.services.transfers import MAX_NAMES


class Detail(serializers.Serializer):  # type: ignore[type-arg]
    detail = serializers.CharField(help_text="What was refused, in one line.")


class StoredFile(serializers.Serializer):  # type: ignore[type-arg]
    path = serializers.CharField(help_text="Relative to the dataset's folder.")
    size = serializers.IntegerField()
    mtime = serializers.FloatField(allow_null=True, help_text="Seconds since the epoch.")
    md5 = serializers.CharField(allow_null=True, help_text="Where known (S3, run records).")


class Manifest(serializers.Serializer):  # type: ignore[type-arg]
    dataset = serializers.CharField()
    links = serializers.BooleanField(help_text="Whether bytes move through signed links (S3).")
    files = StoredFile(many=True)


class Names(serializers.Serializer):  # type: ignore[type-arg]
    paths = serializers.ListField(child=serializers.CharField(), max_length=MAX_NAMES)


class ClaimedNames(Names):
    claim = serializers.UUIDField(help_text="The live claim on the dataset.")


class Checksums(serializers.Serializer):  # type: ignore[type-arg]
    md5 = serializers.DictField(
        child=serializers.CharField(allow_null=True), help_text="{path: MD5, or null if absent}"
    )


class Write(serializers.Serializer):  # type: ignore[type-arg]
    path = serializers.CharField()
    size = serializers.IntegerField(min_value=0)


class LinksRequest(serializers.Serializer):  # type: ignore[type-arg]
    claim = serializers.UUIDField(required=False, help_text="The live claim; needed to write.")
    read = serializers.ListField(child=serializers.CharField(), required=False)
    write = Write(many=True, required=False)


class Link(serializers.Serializer):  # type: ignore[type-arg]
    path = serializers.CharField()
    method = serializers.ChoiceField(choices=["GET", "PUT"])
    url = serializers.URLField(allow_null=True, help_text="null for a multipart upload.")
    upload_id = serializers.CharField(required=False)
    part_size = serializers.IntegerField(required=False)
    parts = serializers.ListField(child=serializers.URLField(), required=False)


class LinksAnswer(serializers.Serializer):  # type: ignore[type-arg]
    expires = serializers.DateTimeField()
    links = Link(many=True)


class CompleteRequest(serializers.Serializer):  # type: ignore[type-arg]
    claim = serializers.UUIDField()
    path = serializers.CharField()
    upload_id = serializers.CharField()
    etags = serializers.ListField(child=serializers.CharField())


class Written(serializers.Serializer):  # type: ignore[type-arg]
    path = serializers.CharField()
    size = serializers.IntegerField()


class Bundled(serializers.Serializer):  # type: ignore[type-arg]
    stored = Written(many=True)


CLAIM_HEADER = OpenApiParameter(
    "X-Crunch-Claim", OpenApiTypes.UUID, OpenApiParameter.HEADER,
    description="The live claim on the dataset; needed to write.",
)  # fmt: skip
TIDY = OpenApiParameter(
    "tidy", OpenApiTypes.STR, enum=["1"],
    description="1: remove what a killed upload left half-written (needs the claim).",
)  # fmt: skip
UNDER = OpenApiParameter(
    "under", OpenApiTypes.STR, description="Only the files in this folder of the dataset."
)


def refusals(*codes: int) -> dict[int, OpenApiResponse]:
    """The error answers a view gives, each a one-line ``detail``."""
    meaning = {
        400: "A name or body refused.", 401: "No token.", 403: "May see, not write.",
        404: "No such dataset (or file) that you may see.", 409: "The claim is not live.",
    }  # fmt: skip
    return {code: OpenApiResponse(Detail, description=meaning[code]) for code in codes}
