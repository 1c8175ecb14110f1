"""A JSON field stored encrypted: the database holds a Fernet token, Python sees the value."""

import json

from django.core.exceptions import ImproperlyConfigured
from django.db import models

from mmm import encryption


class EncryptedJSONField(models.TextField):
    """JSON encrypted at rest (worker headers hold upstream API keys).

    Each save encrypts anew, so equal values give different tokens: the column cannot be
    filtered on, and lookups on it are refused rather than silently matching nothing.
    """

    description = "JSON, encrypted at rest"

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
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
        return encryption.encrypt(json.dumps(value, ensure_ascii=False, sort_keys=True))

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
    """A URL whose query string (where some APIs take their key: ``?key=...``) is encrypted at
    rest, deterministically, so the URL still identifies its worker in lookups and the unique
    constraint. Scheme, host and path stay readable: the operator searches and sorts by them.

    Stored as ``<url before ?>?mmmq1.<token>``; a URL without a query string is stored as it is.
    """

    description = "URL with its query string encrypted at rest"
    MARK = "mmmq1."

    def from_db_value(self, value, expression, connection):
        if not value or "?" + self.MARK not in value:
            return value
        base, _, token = value.partition("?" + self.MARK)
        try:
            return f"{base}?{encryption.decrypt_deterministic(token)}"
        except encryption.InvalidToken:
            raise ImproperlyConfigured(
                f"{self.model.__name__}.{self.name} cannot be decrypted with MMM_SECRET_KEYS: "
                "was the key that encrypted it removed?"
            ) from None

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value or "?" not in value or "?" + self.MARK in value:
            return value
        base, _, query = value.partition("?")
        return f"{base}?{self.MARK}{encryption.encrypt_deterministic(query)}"
