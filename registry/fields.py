"""A JSON field stored encrypted: the database holds a Fernet token, Python sees the value."""

import json

from django.core.exceptions import ImproperlyConfigured
from django.db import models

from inference import redaction
from mmm import encryption


class EncryptedJSONField(models.TextField):
    """JSON encrypted at rest (worker headers hold upstream API keys).

    Each save encrypts anew, so equal values give different tokens: the column cannot be
    filtered on, and lookups on it are refused rather than silently matching nothing.

    An empty object or list holds no secret and is stored as it is (``{}``, ``[]``; a token is
    base64, never either), as EncryptedQueryURLField stores a URL without secrets: reading the
    rows of a fleet without upstream keys then needs no decryption, and a gateway process never
    loads cryptography for them (mmm.encryption). Rows written encrypted before read as ever.
    """

    description = "JSON, encrypted at rest"
    PLAIN = frozenset({"{}", "[]"})

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        if value in self.PLAIN:
            return json.loads(value)
        try:
            return json.loads(encryption.decrypt(value))
        except encryption.InvalidToken:
            raise ImproperlyConfigured(
                f"{self.model.__name__}.{self.name} cannot be decrypted with MMM_SECRET_KEYS: "
                "was the key that encrypted it removed?"
            ) from None

    def to_python(self, value):
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value  # the validators say what is wrong with it
        return value

    def get_prep_value(self, value):
        if value is None:
            return None
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
        return text if text in self.PLAIN else encryption.encrypt(text)

    def get_lookup(self, lookup_name):
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        raise NotImplementedError(f"{self.name} is encrypted; it cannot be filtered on")

    def value_to_string(self, obj):
        return json.dumps(self.value_from_object(obj))

    def formfield(self, **kwargs):
        from django import forms

        return forms.JSONField(**{"required": not self.blank, **kwargs})


class EncryptedQueryURLField(models.CharField):
    """A URL whose secrets are encrypted at rest: the query string (where some APIs take their
    key: ``?key=...``) and the password of its user info. Deterministically, so the URL still
    identifies its worker in lookups and the unique constraint. Scheme, host and path stay
    readable: the operator searches and sorts by them.

    Stored as ``scheme://user:mmmp1.<token>@host/path?mmmq1.<token>``; a URL without either is
    stored as it is.
    """

    description = "URL with its password and query string encrypted at rest"
    MARK = "mmmq1."
    PASSWORD_MARK = "mmmp1."

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        try:
            if "?" + self.MARK in value:
                base, _, token = value.partition("?" + self.MARK)
                value = f"{base}?{encryption.decrypt_deterministic(token)}"
            span = _password_span(value)
            if span and value[span[0] : span[1]].startswith(self.PASSWORD_MARK):
                token = value[span[0] + len(self.PASSWORD_MARK) : span[1]]
                value = value[: span[0]] + encryption.decrypt_deterministic(token) + value[span[1] :]
        except encryption.InvalidToken:
            raise ImproperlyConfigured(
                f"{self.model.__name__}.{self.name} cannot be decrypted with MMM_SECRET_KEYS: "
                "was the key that encrypted it removed?"
            ) from None
        return value

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        # Always encrypted, even what looks encrypted already: the value here is what Python
        # sees (reading decrypts), and a URL sent with a made-up "mmmq1." must not be stored as
        # a token no key opens, which would fail every read of the table.
        span = _password_span(value)
        if span and span[0] < span[1]:
            token = encryption.encrypt_deterministic(value[span[0] : span[1]])
            value = value[: span[0]] + self.PASSWORD_MARK + token + value[span[1] :]
        if "?" not in value:
            return value
        base, _, query = value.partition("?")
        return f"{base}?{self.MARK}{encryption.encrypt_deterministic(query)}"


def _password_span(url: str) -> tuple[int, int] | None:
    """Where the password of ``url``'s user info is (start, end), or None. Found by hand, not
    with urlsplit: a template's host or port may still be a placeholder."""
    start = url.find("://")
    if start < 0:
        return None
    start += 3
    end = len(url)
    for stop in "/?#":
        found = url.find(stop, start)
        if found >= 0:
            end = min(end, found)
    at = url.rfind("@", start, end)
    colon = url.find(":", start, at) if at >= 0 else -1
    return (colon + 1, at) if colon >= 0 else None


class EncryptedSecretsJSONField(models.JSONField):
    """JSON whose credential fields (``inference.redaction.is_secret_field``: api_key, token, ...)
    are encrypted at rest, each value as a Fernet token, so the rest of a body template stays
    readable in the database. A token is ``"mmms1.<Fernet token of the JSON value>"``."""

    description = "JSON with its credential fields encrypted at rest"
    MARK = "mmms1."

    def from_db_value(self, value, expression, connection):
        return self._walk(super().from_db_value(value, expression, connection), self._reveal)

    def get_prep_value(self, value):
        return super().get_prep_value(self._walk(value, self._conceal))

    def _walk(self, value, change):
        if isinstance(value, dict):
            return {
                key: change(key, item) if redaction.is_secret_field(key, item) else self._walk(item, change)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [self._walk(item, change) for item in value]
        return value

    def _conceal(self, key, value):
        # Always, even a value that looks like a token: see EncryptedQueryURLField.get_prep_value.
        return self.MARK + encryption.encrypt(json.dumps(value, ensure_ascii=False))

    def _reveal(self, key, value):
        if not (isinstance(value, str) and value.startswith(self.MARK)):
            return value  # written before this field encrypted anything: rotate_secrets encrypts it
        try:
            return json.loads(encryption.decrypt(value[len(self.MARK) :]))
        except encryption.InvalidToken:
            raise ImproperlyConfigured(
                f"{self.model.__name__}.{self.name}[{key!r}] cannot be decrypted with MMM_SECRET_KEYS: "
                "was the key that encrypted it removed?"
            ) from None
