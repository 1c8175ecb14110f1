from django.apps import AppConfig


class MmmConfig(AppConfig):
    """The project package as an app, so its system checks (mmm/checks.py) are registered. Its
    OpenAPI extensions register when a schema is generated (mmm/openapi/hooks.py), not in every
    worker: drf-spectacular, yaml and pygments would add about 2.6 MiB to each."""

    name = "mmm"
    verbose_name = "gateway"

    def ready(self) -> None:
        from mmm import checks  # noqa: F401 - registers the checks
