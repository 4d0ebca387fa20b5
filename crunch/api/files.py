"""``api/datasets/<slug>/...``: a dataset's files through the server, for nodes without
storage keys (``--transfer server``) and for ``crunch download``.

Every view asks ``transfers.grant()`` first, the one access rule; the bytes then move by
signed links (S3) or through these views (every other storage). A write names its claim
in the ``X-Crunch-Claim`` header (or the body's ``claim``).
"""

from __future__ import annotations

import posixpath
from typing import Any

from django.conf import settings
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import (
    NotAuthenticated,
    NotFound,
    ParseError,
    PermissionDenied,
    ValidationError,
)
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from crunch.api import file_schema as fs
from crunch.api.parsers import JSONParser
from crunch.api.views import CrunchAPI
from crunch.conf import crunch_settings
from crunch.models import Dataset
from crunch.services import links, streams, transfers
from crunch.services.transfers import Grant, Refused

CHECKSUMS_AT_ONCE = 64
READ = (400, 404)
WRITE = (400, 401, 403, 404, 409)


class GrantDecides(BasePermission):
    """Every view here asks ``granted()``, which decides alone: reads sent as POST (a
    body of names) are open to whoever may view, as GETs are."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return True


def granted(request: Request, slug: str, *, write: bool = False, claim: Any = None) -> Grant:
    """The request's grant on the dataset (``transfers.grant``), its refusals as HTTP's."""
    if write and not (request.user and request.user.is_authenticated):
        raise NotAuthenticated("Writing a dataset's files needs a worker's token.")
    claim = claim or request.META.get("HTTP_X_CRUNCH_CLAIM")
    try:
        return transfers.grant(request.user, slug, claim=claim, write=write)
    except transfers.Forbidden as exc:
        raise PermissionDenied(str(exc)) from None
    except Dataset.DoesNotExist:
        what = "write" if write else "read"
        raise NotFound(f"No dataset {slug!r} that you may {what}.") from None


def checked(value: Any, check: Any) -> Any:
    """``check(value)``, its Refused as a 400 with its one line."""
    try:
        return check(value)
    except Refused as exc:
        raise ValidationError({"detail": str(exc)}) from None


def body_length(request: Request) -> int:
    """The announced size of a streamed body: without it nothing is read."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        raise ParseError("Send the body's size in Content-Length (no chunked bodies).") from None
    if length < 0:
        raise ParseError("Content-Length must not be negative.")
    return length


class ManifestView(CrunchAPI, APIView):
    """``GET``: the dataset's files with size, mtime and MD5 where known."""

    permission_classes = (GrantDecides,)

    @extend_schema(
        responses={200: fs.Manifest, **fs.refusals(*WRITE)},
        parameters=[fs.CLAIM_HEADER, fs.TIDY, fs.UNDER],
    )
    def get(self, request: Request, slug: str) -> Response:
        tidy = request.query_params.get("tidy") == "1"
        under = request.query_params.get("under", "")
        if under:
            under = checked(under, transfers.clean_file_path)
        grant = granted(request, slug, write=tidy)
        files = transfers.manifest(grant, under=under, tidy=tidy)
        return Response(
            {
                "dataset": grant.dataset.slug,
                "links": links.signs(grant),
                "files": [info.as_dict() for info in files],
            }
        )


class LinksView(CrunchAPI, APIView):
    """``POST {claim, read: [path], write: [{path, size}]}``: signed links (S3 only)."""

    permission_classes = (GrantDecides,)
    parser_classes = (JSONParser,)

    @extend_schema(request=fs.LinksRequest, responses={200: fs.LinksAnswer, **fs.refusals(*WRITE)})
    def post(self, request: Request, slug: str) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        reads = checked(data.get("read", []), transfers.clean_file_paths)
        writes = [  # every name checked before any multipart upload is begun
            (checked(path, transfers.clean_file_path), size)
            for path, size in checked(data.get("write", []), links.write_sizes)
        ]
        if len(reads) + len(writes) > transfers.MAX_NAMES:
            raise ValidationError({"detail": f"Ask for at most {transfers.MAX_NAMES} links."})
        grant = granted(request, slug, write=bool(writes), claim=data.get("claim"))
        if not links.signs(grant):
            raise ValidationError({"detail": "This storage signs no links: use files/, bundle/."})
        signer = links.Signer(grant)
        answer = [signer.read(path).as_dict() for path in reads]
        answer += [signer.write(path, size).as_dict() for path, size in writes]
        return Response({"expires": grant.expires, "links": answer})


class CompleteView(CrunchAPI, APIView):
    """``POST {claim, path, upload_id, etags}``: join the parts of a multipart upload."""

    permission_classes = (GrantDecides,)
    parser_classes = (JSONParser,)

    @extend_schema(request=fs.CompleteRequest, responses={204: None, **fs.refusals(*WRITE)})
    def post(self, request: Request, slug: str) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        path = checked(data.get("path"), transfers.clean_file_path)
        upload_id, etags = data.get("upload_id"), data.get("etags")
        if (
            not isinstance(upload_id, str)
            or not isinstance(etags, list)
            or not all(isinstance(etag, str) for etag in etags)
        ):
            raise ValidationError({"detail": "Send the upload_id and the parts' etags in order."})
        grant = granted(request, slug, write=True, claim=data.get("claim"))
        if not links.signs(grant):
            raise ValidationError({"detail": "This storage signs no links."})
        try:
            links.Signer(grant).complete(path, upload_id, etags)
        except Exception as exc:  # botocore's ClientError: a wrong id or part list
            if type(exc).__name__ != "ClientError":
                raise
            raise ValidationError({"detail": f"S3 refused to complete {path!r}: {exc}"}) from None
        return Response(status=204)


class ChecksumsView(CrunchAPI, APIView):
    """``POST {claim, paths}``: the stored files' MD5s, read from storage, for a resumed
    upload to leave alone what a killed one already stored. Only the claim holder asks:
    each costs the server a read of the file."""

    permission_classes = (GrantDecides,)
    parser_classes = (JSONParser,)

    @extend_schema(request=fs.ClaimedNames, responses={200: fs.Checksums, **fs.refusals(*WRITE)})
    def post(self, request: Request, slug: str) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        paths = checked(data.get("paths"), transfers.clean_file_paths)
        if len(paths) > CHECKSUMS_AT_ONCE:
            raise ValidationError({"detail": f"Ask for at most {CHECKSUMS_AT_ONCE} checksums."})
        grant = granted(request, slug, write=True, claim=data.get("claim"))
        return Response({"md5": {path: streams.md5_of(grant, path) for path in paths}})


class FileView(CrunchAPI, APIView):
    """``GET``: one stored file's bytes; ``PUT`` (with the claim): replace it."""

    permission_classes = (GrantDecides,)

    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, **fs.refusals(*READ)}
    )
    def get(self, request: Request, slug: str, path: str) -> HttpResponseBase:
        grant = granted(request, slug)
        path = checked(path, transfers.clean_file_path)
        opened = streams.open_stored(grant, path)
        if opened is None:
            raise NotFound(f"No file {path!r} in dataset {slug!r}.")
        return sent(opened, path)

    @extend_schema(
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={200: fs.Written, **fs.refusals(*WRITE)}, parameters=[fs.CLAIM_HEADER],
    )  # fmt: skip
    def put(self, request: Request, slug: str, path: str) -> Response:
        path = checked(path, transfers.clean_file_path)
        length = body_length(request)
        grant = granted(request, slug, write=True)
        stream: Any = request._request  # the raw body, read in chunks
        try:
            checked(None, lambda _none: streams.write_stored(grant, path, stream, length))
        except streams.Incomplete as exc:
            raise ParseError(str(exc)) from None
        return Response({"path": path, "size": length})


def sent(opened: streams.Opened, path: str) -> HttpResponseBase:
    """The file as an attachment, or (``CRUNCH_SENDFILE``) handed to the web server."""
    how = crunch_settings.SENDFILE
    if opened.path is not None and how in ("x-accel-redirect", "x-sendfile"):
        opened.handle.close()
        handed = HttpResponse(content_type="application/octet-stream")
        if how == "x-sendfile":
            handed["X-Sendfile"] = opened.path
        else:
            root = str(getattr(settings, "MEDIA_ROOT", ""))
            internal = crunch_settings.SENDFILE_PREFIX
            handed["X-Accel-Redirect"] = (
                internal.rstrip("/") + "/" + posixpath.relpath(opened.path, root)
            )
        return handed
    response = FileResponse(opened.handle, as_attachment=True, filename=posixpath.basename(path))
    response["X-Content-Type-Options"] = "nosniff"
    return response


class BundleView(CrunchAPI, APIView):
    """Many small files in one request: ``POST {paths}`` answers them as a tar stream;
    ``PUT`` a tar stream (with the claim) stores each of its files."""

    permission_classes = (GrantDecides,)
    parser_classes = (JSONParser,)  # names in JSON; a bundle PUT is read raw

    @extend_schema(
        request=fs.Names,
        responses={(200, "application/x-tar"): OpenApiTypes.BINARY, **fs.refusals(*READ)},
    )
    def post(self, request: Request, slug: str) -> StreamingHttpResponse:
        data = request.data if isinstance(request.data, dict) else {}
        paths = checked(data.get("paths"), transfers.clean_file_paths)
        grant = granted(request, slug)
        return StreamingHttpResponse(streams.tar_of(grant, paths), content_type="application/x-tar")

    @extend_schema(
        request={"application/x-tar": OpenApiTypes.BINARY},
        responses={200: fs.Bundled, **fs.refusals(*WRITE)}, parameters=[fs.CLAIM_HEADER],
    )  # fmt: skip
    def put(self, request: Request, slug: str) -> Response:
        length = body_length(request)
        grant = granted(request, slug, write=True)
        stream: Any = request._request
        try:
            stored = checked(None, lambda _none: streams.untar(grant, stream, length))
        except streams.Incomplete as exc:
            raise ParseError(str(exc)) from None
        return Response({"stored": [{"path": path, "size": size} for path, size in stored]})
