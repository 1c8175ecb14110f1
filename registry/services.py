"""Writes to the registry: register, take offline, enable and disable workers."""

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from inference.routing import routing_table
from registry.exceptions import WorkerNotFound
from registry.models import Worker

# The fields a registration may set; the health fields belong to the prober alone.
REGISTRATION_FIELDS = (
    "method",
    "headers",
    "body",
    "response_extract",
    "owner",
    "weight",
    "enabled",
    "timeout",
    "health_url",
    "legacy_options",
)


def worker_register(*, model_name: str, req_url_template: str, **fields: Any) -> tuple[Worker, bool]:
    """Create the worker, or update the one with the same model name and URL in place.

    Fields not given keep their current values (defaults for a new worker). Validation is
    the model's own (the admin runs the same), and nothing is written unless all of it passes.
    Returns (worker, created).
    """
    unknown = set(fields) - set(REGISTRATION_FIELDS)
    if unknown:
        raise TypeError(f"worker_register() got unknown fields: {sorted(unknown)}")
    # Two registrations of a new worker may race to insert it; the loser updates instead.
    for attempt in range(2):
        try:
            with transaction.atomic():
                worker, created = _apply_registration(model_name, req_url_template, fields)
            break
        except IntegrityError:
            if attempt:
                raise
    routing_table.invalidate()
    return worker, created


def _apply_registration(model_name: str, req_url_template: str, fields: dict[str, Any]) -> tuple[Worker, bool]:
    worker = (
        Worker.objects.select_for_update()
        .filter(model_name=model_name, req_url_template=req_url_template)
        .first()
    )
    created = worker is None
    if created:
        worker = Worker(model_name=model_name, req_url_template=req_url_template)
    for name, value in fields.items():
        setattr(worker, name, value)
    # Uniqueness was just settled by the lookup under lock; a racing insert fails in save().
    worker.full_clean(validate_unique=False, validate_constraints=False)
    if created:
        worker.save()
    else:
        # Only what the registration carries, so a probe's concurrent health update stands.
        worker.save(update_fields=[*fields, "updated_at"])
    return worker, created


def worker_offline(*, model_name: str, req_url_template: str) -> None:
    deleted, _ = Worker.objects.filter(model_name=model_name, req_url_template=req_url_template).delete()
    if not deleted:
        raise WorkerNotFound(model_name=model_name, req_url_template=req_url_template)
    routing_table.invalidate()


def workers_set_enabled(*, worker_ids: list[int], enabled: bool) -> int:
    """Enable or disable workers; returns how many changed."""
    to_change = Worker.objects.filter(pk__in=worker_ids).exclude(enabled=enabled)
    changed = to_change.update(enabled=enabled, updated_at=timezone.now())
    routing_table.invalidate()
    return changed
