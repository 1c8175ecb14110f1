"""What counts as a secret in a worker, and how it is masked: the one place for both.

A worker holds upstream credentials in four places: header values, a URL's user info, a URL's
query values (``?key=...``, as some APIs take their key) and credential-named fields of the
body template. Everything shown to people or clients (API answers, the admin, the dashboard,
logs, quoted upstream errors) goes through here; the stored values keep them, encrypted at rest
(registry/fields.py).
"""

import functools
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from inference import templating

MASK = "***"
# Names of headers and body fields that carry credentials.
_SECRET_NAME = re.compile(r"auth|key|token|secret|cookie|passw|signature|credential|sig$|^code$", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"^\{(" + "|".join(templating.PLACEHOLDERS) + r")\}$")
# Masking a few characters would garble messages and hide nothing worth hiding.
_MIN_SECRET_CHARS = 6


def is_secret_name(name: Any) -> bool:
    """Whether a header or body field called ``name`` carries a credential."""
    return bool(_SECRET_NAME.search(str(name)))


def is_placeholder(text: str) -> bool:
    """Whether ``text`` is exactly one template placeholder ({USER_PROMPT}, ...): no secret."""
    return bool(_PLACEHOLDER.match(text))


def is_secret_field(name: Any, value: Any) -> bool:
    """Whether the body field ``name: value`` holds a credential: a credential name and a value
    that is neither empty, a structure (its own fields are judged one by one) nor a placeholder."""
    if not is_secret_name(name) or isinstance(value, (dict, list)) or value in (None, ""):
        return False
    return not (isinstance(value, str) and is_placeholder(value))


# --- Showing -----------------------------------------------------------------------------------


# Every completion's request-log row names its worker's URL this way (0.9% of a proxied
# completion's CPU at c=32, docs/benchmark.md); the registered URLs are few and the answer fixed.
@functools.lru_cache(maxsize=4096)
def redact_url(url: str) -> str:
    """The URL without query string, fragment or user info: what log lines and stored records name."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def url_for_display(url: str) -> str:
    """The URL with any user info and every query value masked (names, path and placeholders
    kept), as the API, the admin and the dashboard show it. ``url_unmasked`` undoes it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    pieces = [_masked_piece(piece) for piece in parts.query.split("&")] if parts.query else []
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(pieces), parts.fragment))


def _masked_piece(piece: str) -> str:
    name, equals, value = piece.partition("=")
    if not value or _PLACEHOLDER.match(unquote(value)):
        return piece
    return f"{name}{equals}{MASK}"


def headers_for_display(headers: dict[str, str]) -> dict[str, str]:
    """Every header value masked: the names say what is configured, no value is shown."""
    return dict.fromkeys(headers or {}, MASK)


def body_for_display(body: Any) -> Any:
    """The body template with the values of credential-named fields masked (placeholders kept)."""
    if isinstance(body, dict):
        return {key: (MASK if is_secret_field(key, value) else body_for_display(value)) for key, value in body.items()}
    if isinstance(body, list):
        return [body_for_display(item) for item in body]
    return body


# --- Editing: a masked value sent back keeps the stored one, as a password field does ------------


def url_unmasked(submitted: str, stored: str) -> str:
    """``submitted`` with each masked part (user info, query values) put back from ``stored``:
    the nth ``name=***`` takes the stored value of the nth ``name``."""
    if MASK not in (submitted or "") or not stored:
        return submitted
    try:
        new, old = urlsplit(submitted), urlsplit(stored)
    except ValueError:
        return submitted
    netloc = new.netloc
    if netloc.startswith(MASK + "@") and "@" in old.netloc:
        netloc = old.netloc.rpartition("@")[0] + "@" + netloc.rpartition("@")[2]
    stored_values: dict[str, list[str]] = {}
    for piece in old.query.split("&") if old.query else []:
        name, _, value = piece.partition("=")
        stored_values.setdefault(name, []).append(value)
    seen: dict[str, int] = {}
    pieces = []
    for piece in new.query.split("&") if new.query else []:
        name, equals, value = piece.partition("=")
        index = seen[name] = seen.get(name, -1) + 1
        if value == MASK and index < len(stored_values.get(name, [])):
            piece = f"{name}{equals}{stored_values[name][index]}"
        pieces.append(piece)
    return urlunsplit((new.scheme, netloc, new.path, "&".join(pieces), new.fragment))


def headers_unmasked(submitted: Any, stored: dict[str, str] | None) -> Any:
    """A header sent back as ``***`` keeps its stored value; a new value replaces it."""
    if not isinstance(submitted, dict):
        return submitted
    stored = stored or {}
    return {name: stored[name] if value == MASK and name in stored else value for name, value in submitted.items()}


def body_unmasked(submitted: Any, stored: Any) -> Any:
    """``submitted`` with each credential field sent back as ``***`` put back from ``stored``,
    matched by its place in the template."""
    if isinstance(submitted, dict) and isinstance(stored, dict):
        return {
            key: stored[key]
            if value == MASK and key in stored and is_secret_field(key, stored[key])
            else body_unmasked(value, stored.get(key))
            for key, value in submitted.items()
        }
    if isinstance(submitted, list) and isinstance(stored, list):
        return [
            body_unmasked(item, stored[index] if index < len(stored) else None) for index, item in enumerate(submitted)
        ]
    return submitted


# --- Masking what upstreams quote back ---------------------------------------------------------


def secret_header_values(headers: dict[str, str]) -> list[str]:
    """Values of the headers that carry credentials (Authorization, X-Api-Key, Cookie, ...)."""
    return [value for name, value in (headers or {}).items() if is_secret_name(name) and value]


def secret_values(*, headers: dict[str, str], url: str, body: Any) -> list[str]:
    """Every stored value that may be a credential, for masking in what upstreams quote back:
    credential headers, query string values, user info, credential-named body fields."""
    found = secret_header_values(headers)
    try:
        parts = urlsplit(url or "")
    except ValueError:
        parts = None
    if parts is not None:
        for piece in parts.query.split("&") if parts.query else []:
            value = unquote(piece.partition("=")[2])
            if value and not _PLACEHOLDER.match(value):
                found.append(value)
        if parts.password:
            found.append(unquote(parts.password))
        if parts.username and parts.password is None:
            found.append(unquote(parts.username))  # https://TOKEN@host/ carries the token as the user
    found += secret_body_values(body)
    return found


def secret_body_values(body: Any) -> list[str]:
    if isinstance(body, dict):
        found = []
        for key, value in body.items():
            found += [str(value)] if is_secret_field(key, value) else secret_body_values(value)
        return found
    if isinstance(body, list):
        return [value for item in body for value in secret_body_values(item)]
    return []


def mask_secrets(text: str, *, secrets: Iterable[str]) -> str:
    """``text`` with each secret masked, as sent and in the forms an upstream may quote it in:
    the bare token of "Bearer <token>", JSON-escaped, percent-encoded."""
    forms: set[str] = set()
    for secret in secrets:
        for part in {secret, *secret.split()}:
            if len(part) >= _MIN_SECRET_CHARS:
                escaped = json.dumps(part)[1:-1]
                # Some JSON encoders (PHP's, for one) also escape "/" as "\/".
                forms.update({part, escaped, escaped.replace("/", "\\/"), quote(part, safe="")})
    for form in sorted(forms, key=len, reverse=True):  # longest first: a key inside a longer one
        text = text.replace(form, MASK)
    return text
