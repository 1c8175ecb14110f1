from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The operator's console: request log, probe history, dashboard, metrics, health endpoints."""

    name = "console"
    verbose_name = "console"

    def ready(self) -> None:
        from registry.health import probe_recorded

        probe_recorded.connect(_keep_probe, dispatch_uid="console.probe_history")


def _keep_probe(sender, *, result, **_) -> None:
    from console.probe_history import probe_history_add

    probe_history_add(result=result)
