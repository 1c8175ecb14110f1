"""Worker fields as the API and the admin show them: secrets in URLs and body templates masked.

Some providers take the API key in the query string (``?key=...``) or in the JSON body; the
stored values keep them, everything shown to people or clients has them replaced by ``***``.
"""

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from inference import templating
from inference.upstream import secret_header_values

MASK = "***"
# Body fields whose names say they hold a credential (the same words as for headers).
_SECRET_NAME = re.compile(r"auth|key|token|secret|cookie|password|signature|credential|sig$|^code$", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"^\{(" + "|".join(templating.PLACEHOLDERS) + r")\}$")


def url_for_display(url: str) -> str:
    """The URL with every query value and any user:password masked; names and path kept."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(name, value if _PLACEHOLDER.match(value) else MASK) for name, value in pairs], safe="*{}")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def body_for_display(body: Any) -> Any:
    """The body template with the values of credential-named fields masked (placeholders kept)."""
    if isinstance(body, dict):
        return {
            key: (MASK if _is_secret(key, value) else body_for_display(value)) for key, value in body.items()
        }
    if isinstance(body, list):
        return [body_for_display(item) for item in body]
    return body


def _is_secret(key: str, value: Any) -> bool:
    if not _SECRET_NAME.search(str(key)) or isinstance(value, (dict, list)) or value in (None, ""):
        return False
    return not (isinstance(value, str) and _PLACEHOLDER.match(value))


def secret_values(*, headers: dict[str, str], url: str, body: Any) -> list[str]:
    """Every stored value that may be a credential, for masking in what upstreams quote back:
    credential headers, query string values, user info, credential-named body fields."""
    found = list(secret_header_values(headers or {}))
    try:
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        parts, pairs = None, []
    found += [value for _, value in pairs if value and not _PLACEHOLDER.match(value)]
    if parts is not None and parts.password:
        found.append(parts.password)
    found += _secret_body_values(body)
    return found


def _secret_body_values(body: Any) -> list[str]:
    if isinstance(body, dict):
        found = []
        for key, value in body.items():
            if _is_secret(key, value):
                found.append(str(value))
            else:
                found += _secret_body_values(value)
        return found
    if isinstance(body, list):
        return [value for item in body for value in _secret_body_values(item)]
    return []
