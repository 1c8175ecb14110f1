"""Writes to the registry: register, take offline, enable and disable workers."""

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from inference.routing import routing_table
from registry.exceptions import WorkerNotFound
from registry.models import Worker



class _NotGiven:
    def __repr__(self) -> str:
        return "NOT_GIVEN"


# A registration that leaves a field out keeps the worker's current value (a default when new).
NOT_GIVEN: Any = _NotGiven()


def worker_register(
    *,
    model_name: str,
    req_url_template: str,
    kind: str = NOT_GIVEN,
    upstream_model: str = NOT_GIVEN,
    preset: str = NOT_GIVEN,
    method: str = NOT_GIVEN,
    headers: dict[str, str] = NOT_GIVEN,
    body: dict | list | None = NOT_GIVEN,
    response_extract: str = NOT_GIVEN,
    owner: str = NOT_GIVEN,
    weight: int = NOT_GIVEN,
    enabled: bool = NOT_GIVEN,
    timeout: float | None = NOT_GIVEN,
    health_url: str = NOT_GIVEN,
    legacy_options: dict[str, Any] = NOT_GIVEN,
) -> tuple[Worker, bool]:
    """Create the worker, or update the one with the same model name and URL in place.

    Validation is the model's own (the admin runs the same), and nothing is written unless all
    of it passes. Returns (worker, created).
    """
    given = {
        name: value
        for name, value in {
            "kind": kind,
            "upstream_model": upstream_model,
            "preset": preset,
            "method": method,
            "headers": headers,
            "body": body,
            "response_extract": response_extract,
            "owner": owner,
            "weight": weight,
            "enabled": enabled,
            "timeout": timeout,
            "health_url": health_url,
            "legacy_options": legacy_options,
        }.items()
        if value is not NOT_GIVEN
    }
    # Two registrations of a new worker may race to insert it; the loser updates instead.
    for attempt in range(2):
        try:
            with transaction.atomic():
                worker, created = _apply_registration(model_name, req_url_template, given)
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
