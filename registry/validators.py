"""Checks on what a worker may look like, shared by the API and the admin.

The model's fields and ``Worker.clean()`` call these, and both the registration endpoint
(through ``full_clean()`` in the service) and the admin's form run the model's validation:
one path, so the two can never disagree.
"""

import re
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from inference import egress, extract, templating, upstream
from inference.protocols.job import JobApi

# RFC 9110 token characters for header names.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def validate_http_url(value: str) -> None:
    """An absolute http(s) URL with a host; placeholders are allowed anywhere."""
    # Stand-in values let urlsplit judge the shape of a URL that still holds placeholders.
    sample = templating.render_url(value, dict.fromkeys(templating.PLACEHOLDERS, "x"))
    if any(ch.isspace() for ch in sample):
        raise ValidationError("must not contain white space", code="invalid_url")
    try:
        parts = urlsplit(sample)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise ValidationError(f"is not a valid URL ({exc})", code="invalid_url") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError("must be an absolute http:// or https:// URL", code="invalid_url")
    if not parts.hostname:
        raise ValidationError("must name a host", code="invalid_url")


def validate_headers(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError("must be a JSON object of header names to string values", code="invalid_headers")
    for name, header_value in value.items():
        if not _HEADER_NAME.match(name):
            raise ValidationError(f"{name!r} is not a valid header name", code="invalid_headers")
        if name.lower() in upstream.FRAMING_HEADERS:
            raise ValidationError(
                f"{name!r} may not be set: the gateway frames and addresses each request itself", code="framing_header"
            )
        if not isinstance(header_value, str):
            raise ValidationError(f"the value of {name!r} must be a string", code="invalid_headers")
        if "\r" in header_value or "\n" in header_value or "\x00" in header_value:
            raise ValidationError(f"the value of {name!r} must not contain line breaks or NUL", code="invalid_headers")
        if header_value != header_value.strip(" \t"):
            raise ValidationError(
                f"the value of {name!r} must not start or end with white space", code="invalid_headers"
            )
        try:
            header_value.encode("latin-1")
        except UnicodeEncodeError:
            # HTTP/1.1 sends header values as ISO-8859-1 bytes; anything else fails on every call.
            raise ValidationError(
                f"the value of {name!r} has characters HTTP headers cannot carry (only ISO-8859-1)",
                code="invalid_headers",
            ) from None


def validate_body_template(value: Any) -> None:
    if value is not None and not isinstance(value, (dict, list)):
        raise ValidationError("must be a JSON object or array", code="invalid_body")
    validate_no_nul(value)


def validate_no_nul(value: Any) -> None:
    """No NUL character in any string of a JSON value: PostgreSQL cannot store one."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError("must not contain NUL characters (\\u0000)", code="nul_character")
    elif isinstance(value, dict):
        for key, item in value.items():
            validate_no_nul(key)
            validate_no_nul(item)
    elif isinstance(value, list):
        for item in value:
            validate_no_nul(item)


def validate_response_extract(value: str) -> None:
    try:
        extract.parse_path(value)
    except extract.PathSyntaxError as exc:
        raise ValidationError(f"invalid path {value!r}: {exc}", code="invalid_extract") from None


def validate_job_api(value: Any) -> None:
    if value is None:
        return
    try:
        JobApi.from_json(value)
    except ValueError as exc:
        raise ValidationError(str(exc), code="invalid_job_api") from None
    validate_no_nul(value)


def validate_model_name_list(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(name, str) and 0 < len(name) <= 200 for name in value):
        raise ValidationError("must be a list of model names (strings of 1 to 200 characters)")
    if len(set(value)) != len(value):
        raise ValidationError("must not name a model twice")
    if len(value) > 10:
        raise ValidationError("may name at most 10 models")


def password_and_authorization(url: str, headers: Any) -> str | None:
    """Why ``url`` and ``headers`` cannot go together, or None: the HTTP client turns a URL's
    user:password into an Authorization header that silently replaces the configured one."""
    try:
        has_password = urlsplit(url or "").password is not None
    except ValueError:
        return None  # validate_http_url says what is wrong with it
    if has_password and isinstance(headers, dict) and any(name.lower() == "authorization" for name in headers):
        return "has a password and the headers an Authorization header: only one of them can be sent; keep one"
    return None


def egress_refusal(url: str) -> str | None:
    """Why the egress policy refuses ``url``, or None. A host that still holds a placeholder
    is checked only on connect, when it has its value."""
    if not url:
        return None
    sample = templating.render_url(url, dict.fromkeys(templating.PLACEHOLDERS, "x"))
    try:
        host = urlsplit(sample).hostname
        if host is None or urlsplit(url).hostname != host:
            return None
        egress.policy().check_url(sample)
    except ValueError:
        return None  # validate_http_url says what is wrong with it
    except egress.EgressDenied as exc:
        return f"is refused by the egress policy: {exc}"
    return None
