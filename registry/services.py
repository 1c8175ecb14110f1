"""Writes to the registry: register, take offline, enable and disable workers."""

from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.caller import Caller
from inference.routing import routing_table
from registry.audit import worker_event_record
from registry.exceptions import NotWorkerOwner, PolicyNotFound, WorkerNotFound
from registry.models import RoutingPolicy, Worker, WorkerEvent
from registry.ownership import model_check_may_add_worker


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
    usage_extract: str = NOT_GIVEN,
    owner: str = NOT_GIVEN,
    weight: int = NOT_GIVEN,
    enabled: bool = NOT_GIVEN,
    timeout: float | None = NOT_GIVEN,
    health_url: str = NOT_GIVEN,
    max_inflight: int | None = NOT_GIVEN,
    ttl: float | None = NOT_GIVEN,
    job_api: dict | None = NOT_GIVEN,
    capacity: int | None = NOT_GIVEN,
    legacy_options: dict[str, Any] = NOT_GIVEN,
    caller: Caller | None = None,
) -> tuple[Worker, bool]:
    """Create the worker, or update the one with the same model name and URL in place.

    Validation is the model's own (the admin runs the same), and nothing is written unless all
    of it passes. ``caller`` (None with MMM_REQUIRE_AUTH off) becomes the owner of a new worker
    when it is a worker key, must own an existing one unless it is an admin, and is recorded in
    the audit log with the change. Returns (worker, created).
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
            "usage_extract": usage_extract,
            "owner": owner,
            "weight": weight,
            "enabled": enabled,
            "timeout": timeout,
            "health_url": health_url,
            "max_inflight": max_inflight,
            "ttl": ttl,
            "job_api": job_api,
            "capacity": capacity,
            "legacy_options": legacy_options,
        }.items()
        if value is not NOT_GIVEN
    }
    # Two registrations of a new worker may race to insert it; the loser updates instead.
    for attempt in range(2):
        try:
            with transaction.atomic():
                worker, created = _apply_registration(model_name, req_url_template, given, caller)
            break
        except IntegrityError:
            if attempt:
                raise
    routing_table.invalidate()
    return worker, created


def _apply_registration(
    model_name: str, req_url_template: str, fields: dict[str, Any], caller: Caller | None
) -> tuple[Worker, bool]:
    worker = Worker.objects.select_for_update().filter(model_name=model_name, req_url_template=req_url_template).first()
    created = worker is None
    if created:
        model_check_may_add_worker(model_name=model_name, caller=caller)
        worker = Worker(model_name=model_name, req_url_template=req_url_template)
        if caller is not None and not caller.is_admin:
            worker.owner_key_id = caller.api_key_id
    else:
        _check_may_change(worker, caller)
    for name, value in fields.items():
        setattr(worker, name, value)
    # Registering again is also a heartbeat: a worker with a TTL lives that long from now.
    worker.heartbeat_expires_at = _expiry(worker.ttl)
    # Uniqueness was just settled by the lookup under lock; a racing insert fails in save().
    worker.full_clean(validate_unique=False, validate_constraints=False)
    if created:
        worker.save()
    else:
        # Only what the registration carries, so a probe's concurrent health update stands.
        worker.save(update_fields=[*fields, "heartbeat_expires_at", "updated_at"])
    action = WorkerEvent.Action.REGISTERED if created else WorkerEvent.Action.CHANGED
    worker_event_record(worker=worker, action=action, caller=caller, changed_fields=list(fields))
    return worker, created


def _expiry(ttl: float | None):
    return timezone.now() + timedelta(seconds=ttl) if ttl else None


def worker_heartbeat(*, model_name: str, req_url_template: str, caller: Caller | None = None) -> Worker:
    """Keep a worker registered with a TTL alive for another TTL; returns the worker.

    An unknown worker is a 404, so a worker whose registration was removed (expired too long,
    or taken offline) learns that it must register again. A ``worker`` key keeps alive only the
    workers it registered.
    """
    worker = Worker.objects.filter(model_name=model_name, req_url_template=req_url_template).first()
    if worker is None:
        raise WorkerNotFound(model_name=model_name, req_url_template=req_url_template)
    _check_may_change(worker, caller)
    if worker.ttl:
        was_expired = worker.is_expired()
        worker.heartbeat_expires_at = _expiry(worker.ttl)
        Worker.objects.filter(pk=worker.pk).update(heartbeat_expires_at=worker.heartbeat_expires_at)
        if was_expired:
            routing_table.invalidate()  # back at once in this process; others within their refresh
    return worker


def workers_remove_expired(*, expired_for: float) -> list[Worker]:
    """Delete heartbeat workers whose heartbeats stopped over ``expired_for`` seconds ago."""
    cutoff = timezone.now() - timedelta(seconds=expired_for)
    with transaction.atomic():
        # Locked and re-checked, so a heartbeat that arrives meanwhile keeps its worker.
        gone = list(Worker.objects.select_for_update().filter(heartbeat_expires_at__lt=cutoff))
        for worker in gone:
            worker_event_record(
                worker=worker, action=WorkerEvent.Action.OFFLINE, caller=None, actor="probe_workers (heartbeat expired)"
            )
            worker.delete()
    if gone:
        routing_table.invalidate()
    return gone


def policy_set(
    *,
    model_name: str,
    strategy: str = NOT_GIVEN,
    fallbacks: list[str] = NOT_GIVEN,
    max_attempts: int | None = NOT_GIVEN,
    deadline: float | None = NOT_GIVEN,
    per_try_timeout: float | None = NOT_GIVEN,
) -> tuple[RoutingPolicy, bool]:
    """Create or change the routing policy of ``model_name``; fields left out keep their value."""
    given = {
        name: value
        for name, value in {
            "strategy": strategy,
            "fallbacks": fallbacks,
            "max_attempts": max_attempts,
            "deadline": deadline,
            "per_try_timeout": per_try_timeout,
        }.items()
        if value is not NOT_GIVEN
    }
    for attempt in range(2):
        try:
            with transaction.atomic():
                policy = RoutingPolicy.objects.select_for_update().filter(model_name=model_name).first()
                created = policy is None
                policy = policy or RoutingPolicy(model_name=model_name)
                for name, value in given.items():
                    setattr(policy, name, value)
                policy.full_clean(validate_unique=False, validate_constraints=False)
                policy.save()
            break
        except IntegrityError:
            if attempt:
                raise
    routing_table.invalidate()
    return policy, created


def policy_delete(*, model_name: str) -> None:
    deleted, _ = RoutingPolicy.objects.filter(model_name=model_name).delete()
    if not deleted:
        raise PolicyNotFound(model_name=model_name)
    routing_table.invalidate()


def _check_may_change(worker: Worker, caller: Caller | None) -> None:
    """A worker key changes only the workers it registered; admins and (with MMM_REQUIRE_AUTH
    off) anonymous callers change any."""
    if caller is None or caller.is_admin:
        return
    if worker.owner_key_id is None or worker.owner_key_id != caller.api_key_id:
        raise NotWorkerOwner(model_name=worker.model_name)


def worker_offline(*, model_name: str, req_url_template: str, caller: Caller | None = None) -> None:
    with transaction.atomic():
        worker = (
            Worker.objects.select_for_update().filter(model_name=model_name, req_url_template=req_url_template).first()
        )
        if worker is None:
            raise WorkerNotFound(model_name=model_name, req_url_template=req_url_template)
        _check_may_change(worker, caller)
        worker_event_record(worker=worker, action=WorkerEvent.Action.OFFLINE, caller=caller)
        worker.delete()
    routing_table.invalidate()


def workers_set_enabled(*, worker_ids: list[int], enabled: bool, caller: Caller | None = None) -> int:
    """Enable or disable workers; returns how many changed."""
    action = WorkerEvent.Action.ENABLED if enabled else WorkerEvent.Action.DISABLED
    return _workers_set(worker_ids=worker_ids, field="enabled", value=enabled, action=action, caller=caller)


def workers_drain(*, worker_ids: list[int], caller: Caller | None = None) -> int:
    """Set the weight of workers to 0: no new requests, in-flight ones finish; returns how many changed."""
    return _workers_set(
        worker_ids=worker_ids, field="weight", value=0, action=WorkerEvent.Action.CHANGED, caller=caller
    )


def _workers_set(*, worker_ids: list[int], field: str, value: Any, action: str, caller: Caller | None) -> int:
    with transaction.atomic():
        to_change = list(Worker.objects.select_for_update().filter(pk__in=worker_ids).exclude(**{field: value}))
        Worker.objects.filter(pk__in=[worker.pk for worker in to_change]).update(
            **{field: value, "updated_at": timezone.now()}
        )
        for worker in to_change:
            worker_event_record(worker=worker, action=action, caller=caller, changed_fields=[field])
    transaction.on_commit(routing_table.invalidate)
    return len(to_change)
