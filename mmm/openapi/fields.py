"""How drf-spectacular reads the project's own serializer fields and authentication."""

import inspect

from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.plumbing import build_basic_type
from drf_spectacular.types import OpenApiTypes

from mmm.api_fields import RefuseUnknownFieldsMixin


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """An API key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``: either works."""

    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = ["bearerAuth", "apiKeyAuth"]

    def get_security_requirement(self, auto_schema):
        return [{"bearerAuth": []}, {"apiKeyAuth": []}]

    def get_security_definition(self, auto_schema):
        return [
            {"type": "http", "scheme": "bearer", "description": "an API key (manage.py create_api_key)"},
            {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "the same key in another header"},
        ]


class StaffSessionScheme(OpenApiAuthenticationExtension):
    """A staff user signed in to the admin (writes need the CSRF token too)."""

    target_class = "accounts.authentication.StaffSessionAuthentication"
    name = "adminSession"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid", "description": "the admin's session"}


class _NumberFieldExtension(OpenApiSerializerFieldExtension):
    target_class = "mmm.api_fields.StrictNumberField"
    kind = OpenApiTypes.NUMBER

    def map_serializer_field(self, auto_schema, direction):
        schema = build_basic_type(self.kind)
        if self.target.min_value is not None:
            schema["minimum"] = self.target.min_value
        if self.target.max_value is not None:
            schema["maximum"] = self.target.max_value
        return schema


class StrictNumberFieldExtension(_NumberFieldExtension):
    pass


class StrictIntegerFieldExtension(_NumberFieldExtension):
    target_class = "mmm.api_fields.StrictIntegerField"
    kind = OpenApiTypes.INT
    priority = 1  # a subclass of StrictNumberField: this one wins


class StrictBooleanFieldExtension(OpenApiSerializerFieldExtension):
    target_class = "mmm.api_fields.StrictBooleanField"

    def map_serializer_field(self, auto_schema, direction):
        return build_basic_type(OpenApiTypes.BOOL)


class RefuseUnknownFields(OpenApiSerializerExtension):
    """These inputs answer 400 to a field they do not know: ``additionalProperties: false``."""

    target_class = "mmm.api_fields.RefuseUnknownFieldsMixin"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        schema["additionalProperties"] = False
        if schema.get("description") == inspect.getdoc(RefuseUnknownFieldsMixin):
            del schema["description"]  # the mixin's docstring says nothing about the body
        return schema
