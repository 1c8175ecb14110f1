from django.apps import AppConfig


class MmmConfig(AppConfig):
    """The project package as an app, so its system checks (mmm/checks.py) and OpenAPI extensions are registered."""

    name = "mmm"
    verbose_name = "gateway"

    def ready(self) -> None:
        from mmm import checks  # noqa: F401 - registers the checks
        from mmm.openapi import fields, views  # noqa: F401 - registers the OpenAPI extensions
