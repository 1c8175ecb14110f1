"""Reads of the registry."""

from django.db.models import Min, QuerySet

from registry.models import Worker


def worker_list(*, model_name: str | None = None) -> QuerySet[Worker]:
    workers = Worker.objects.all()
    if model_name is not None:
        workers = workers.filter(model_name=model_name)
    return workers


def routable_models() -> list[dict]:
    """Each model name with at least one worker that gets traffic in normal operation (enabled,
    weighted, heartbeat not expired, not unhealthy), with its first registration time and an
    owner: ``/v1/models``."""
    return list(
        Worker.objects.routable()
        .values("model_name")
        .annotate(created_at=Min("created_at"), owner=Min("owner"))
        .order_by("model_name")
    )
