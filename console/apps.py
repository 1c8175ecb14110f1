from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The operator's console: request log, probe history, dashboard, metrics, health endpoints."""

    name = "console"
    verbose_name = "console"
