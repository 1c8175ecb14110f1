"""Finished jobs' outputs in Django's storage (the ``job_results`` alias), and serving them.

The filesystem under var/job_results by default; S3-compatible storage through django-storages
in production (docs/jobs.md). A result is written by the runner that fetched it and read by
whichever gateway process the owner's GET reaches, so the storage is shared by all of them.
"""

import mimetypes
import re
from collections.abc import Iterator
from typing import IO

from django.core.files import File
from django.core.files.storage import Storage, storages
from django.http import HttpResponse, StreamingHttpResponse

_CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def result_storage() -> Storage:
    return storages["job_results"]


def result_store(*, public_id: str, content: IO[bytes], content_type: str) -> str:
    """Save ``content`` as the result of job ``public_id``; return its name in the storage."""
    extension = mimetypes.guess_extension(content_type.split(";")[0].strip()) or ".bin"
    content.seek(0)
    return result_storage().save(f"{public_id}{extension}", File(content))


def result_delete(name: str) -> None:
    if name:
        result_storage().delete(name)


class RangeNotSatisfiable(Exception):
    def __init__(self, size: int):
        self.size = size


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a ``Range: bytes=...`` header, or None for the whole file.
    One range only (as browsers and video players ask); a header this cannot read is ignored,
    as RFC 9110 allows, and a range past the end raises RangeNotSatisfiable."""
    match = _RANGE.match((header or "").strip())
    if not match or match.group(0) == "bytes=-":
        return None
    first_text, last_text = match.groups()
    if first_text == "":  # the last N bytes
        suffix = int(last_text)
        if suffix == 0:
            raise RangeNotSatisfiable(size)
        return max(size - suffix, 0), size - 1
    first = int(first_text)
    last = min(int(last_text), size - 1) if last_text else size - 1
    if first >= size or (last_text and int(last_text) < first):
        raise RangeNotSatisfiable(size)
    return first, last


def result_response(*, name: str, content_type: str, range_header: str | None) -> HttpResponse:
    """The stored result, streamed; a ``Range`` gets a 206 with just those bytes."""
    storage = result_storage()
    size = storage.size(name)
    try:
        wanted = byte_range(range_header, size)
    except RangeNotSatisfiable:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    first, last = wanted or (0, size - 1)
    handle = storage.open(name, "rb")
    handle.seek(first)
    response = StreamingHttpResponse(
        _read(handle, last - first + 1), content_type=content_type, status=206 if wanted else 200
    )
    response["Content-Length"] = str(last - first + 1)
    response["Accept-Ranges"] = "bytes"
    if wanted:
        response["Content-Range"] = f"bytes {first}-{last}/{size}"
    return response


def _read(handle: IO[bytes], length: int) -> Iterator[bytes]:
    try:
        while length > 0:
            chunk = handle.read(min(_CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk
    finally:
        handle.close()
