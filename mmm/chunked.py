"""Chunked request bodies, read as bodies.

gunicorn decodes ``Transfer-Encoding: chunked`` and hands the body on in ``wsgi.input`` with
no CONTENT_LENGTH; Django reads a request without CONTENT_LENGTH as empty, so a chunked
completion request would be refused as having no input. This WSGI wrapper reads such a body
(at most one byte past MMM_MAX_REQUEST_BYTES, so a larger one is still Django's 413) and hands
Django a body with its length, as if the client had sent Content-Length.
"""

import io

from django.conf import settings


class ChunkedBodies:
    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() and not environ.get("CONTENT_LENGTH"):
            body = read_at_most(environ["wsgi.input"], settings.MMM_MAX_REQUEST_BYTES + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.application(environ, start_response)


def read_at_most(stream, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = stream.read(min(64 * 1024, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
