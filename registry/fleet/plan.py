"""What applying a fleet file changes, and the change itself, in one audited transaction.

A worker is named by its model and URL, as in the API. A field the file leaves out gets the
field's default: the registry ends up as the file says, not as it was plus the file. Health,
ownership and the first implementation's legacy fields are not the file's business.
"""

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from inference.redaction import url_for_display
from inference.routing import routing_table
from registry.audit import worker_event_record
from registry.fleet.document import Fleet, FleetFileError
from registry.models import RoutingPolicy, Worker, WorkerEvent

WORKER_FIELDS = (
    "kind",
    "upstream_model",
    "method",
    "headers",
    "body",
    "response_extract",
    "owner",
    "weight",
    "enabled",
    "timeout",
    "health_url",
    "max_inflight",
    "ttl",
    "job_api",
    "capacity",
)
POLICY_FIELDS = ("strategy", "fallbacks", "max_attempts", "deadline", "per_try_timeout")
# Shown as "changed", never with their values.
SECRET_FIELDS = {"headers", "body", "health_url"}
ACTOR = "manage.py apply"


def _defaults(model, names) -> dict[str, Any]:
    return {name: model._meta.get_field(name).get_default() for name in names}


@dataclass
class Change:
    verb: str  # "create", "update", "delete"
    what: str  # "worker proxyllm @ http://..."
    fields: list[str] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-"}[self.verb]
        return f"{sign} {self.verb} {self.what}" + (f": {', '.join(self.detail)}" if self.detail else "")


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    _writes: list = field(default_factory=list)  # (verb, instance, fields)

    def __bool__(self) -> bool:
        return bool(self.changes)


def fleet_plan(fleet: Fleet, *, prune: bool, source: str = "fleet.yaml") -> Plan:
    """The changes that make the registry match ``fleet``; every worker and policy is
    validated as the API validates them, and all problems are raised together."""
    plan, problems = Plan(), []
    existing = {(worker.model_name, worker.req_url_template): worker for worker in Worker.objects.all()}
    named = set()
    worker_defaults = _defaults(Worker, WORKER_FIELDS)
    for spec in fleet.workers:
        key = (spec.model_name, spec.fields["req_url_template"])
        if key in named:
            problems.append(f"{spec.line}: model {spec.model_name!r} names the same worker URL twice")
            continue
        named.add(key)
        wanted = {**worker_defaults, **{name: spec.fields[name] for name in WORKER_FIELDS if name in spec.fields}}
        if "preset" in spec.fields:
            wanted["preset"] = spec.fields["preset"]
        worker = existing.get(key) or Worker(model_name=spec.model_name, req_url_template=key[1])
        _stage(
            plan,
            problems,
            worker,
            wanted,
            what=f"worker {spec.model_name} @ {url_for_display(key[1])}",
            where=f"{spec.line}: worker of {spec.model_name!r}",
        )
    if prune:
        for key, worker in existing.items():
            if key not in named:
                plan.changes.append(Change("delete", f"worker {worker}"))
                plan._writes.append(("delete", worker, []))

    policies = {policy.model_name: policy for policy in RoutingPolicy.objects.all()}
    policy_defaults = _defaults(RoutingPolicy, POLICY_FIELDS)
    for spec in fleet.policies:
        policy = policies.get(spec.model_name) or RoutingPolicy(model_name=spec.model_name)
        _stage(
            plan,
            problems,
            policy,
            {**policy_defaults, **spec.fields},
            what=f"policy {spec.model_name}",
            where=f"{spec.line}: policy of {spec.model_name!r}",
        )
    if prune:
        for name in sorted(set(policies) - {spec.model_name for spec in fleet.policies}):
            plan.changes.append(Change("delete", f"policy {name}"))
            plan._writes.append(("delete", policies[name], []))
    if problems:
        raise FleetFileError(source, problems)
    return plan


def _stage(plan: Plan, problems: list[str], instance, wanted: dict[str, Any], *, what: str, where: str) -> None:
    """Set ``wanted`` on ``instance`` and add its creation or update to ``plan`` if it is
    valid as the API would have it; else add the reasons to ``problems``."""
    changed = [name for name in wanted if instance.pk is None or getattr(instance, name) != wanted[name]]
    before = {name: getattr(instance, name) for name in changed}
    for name, value in wanted.items():
        setattr(instance, name, value)
    try:
        instance.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        problems += [f"{where}: {name}: {' '.join(messages)}" for name, messages in exc.message_dict.items()]
        return
    if instance.pk is None:
        plan.changes.append(Change("create", what))
        plan._writes.append(("create", instance, changed))
    elif changed:
        plan.changes.append(
            Change("update", what, changed, [_shown(name, before[name], wanted[name]) for name in changed])
        )
        plan._writes.append(("update", instance, changed))


def _shown(name: str, before: Any, after: Any) -> str:
    if name in SECRET_FIELDS:
        return f"{name} changed"
    return f"{name} {before!r} -> {after!r}"


def plan_apply(plan: Plan) -> None:
    """Write every change of ``plan`` in one transaction, audited like the API's changes."""
    with transaction.atomic():
        for verb, instance, fields in plan._writes:
            if verb == "delete":
                if isinstance(instance, Worker):
                    worker_event_record(worker=instance, action=WorkerEvent.Action.OFFLINE, caller=None, actor=ACTOR)
                instance.delete()
                continue
            if isinstance(instance, Worker) and ("ttl" in fields or verb == "create"):
                instance.heartbeat_expires_at = (
                    timezone.now() + timedelta(seconds=instance.ttl) if instance.ttl else None
                )
            if verb == "create":
                instance.save()
            else:  # only what the file changes, so a probe's concurrent health update stands
                extra = ["heartbeat_expires_at"] if "ttl" in fields else []
                instance.save(update_fields=[*fields, *extra, "updated_at"])
            if isinstance(instance, Worker):
                action = WorkerEvent.Action.REGISTERED if verb == "create" else WorkerEvent.Action.CHANGED
                worker_event_record(worker=instance, action=action, caller=None, changed_fields=fields, actor=ACTOR)
    routing_table.invalidate()
