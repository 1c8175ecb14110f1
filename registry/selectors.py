"""Reads of the registry."""

from django.db.models import QuerySet

from registry.models import Worker


def worker_list(*, model_name: str | None = None) -> QuerySet[Worker]:
    workers = Worker.objects.all()
    if model_name is not None:
        workers = workers.filter(model_name=model_name)
    return workers
