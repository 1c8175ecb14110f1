"""Tenancy: which worker keys may add workers to a model name (see ModelOwner).

Every worker of a model gets a share of the model's requests, prompts included, so joining a
model is the owner's decision, not any worker key's. Ownership is checked when a worker is
created; a worker that exists already is changed only by the key that registered it
(services._check_may_change), so workers registered before ownership keep working.
"""

from collections.abc import Iterable

from django.db import transaction
from rest_framework.exceptions import ValidationError

from accounts.caller import Caller
from accounts.models import ApiKey
from registry.exceptions import ModelNotOwned
from registry.models import ModelOwner, Worker


def first_owner_key_id(worker_model, model_name: str) -> int | None:
    """The key of the model's oldest worker: its owner when ownership was not recorded (the
    data migration, and names the admin registered before a ModelOwner row was written)."""
    oldest = worker_model.objects.filter(model_name=model_name).order_by("created_at", "id")
    return oldest.values_list("owner_key_id", flat=True).first()


def model_check_may_add_worker(*, model_name: str, caller: Caller | None) -> None:
    """Record who owns ``model_name`` if nobody did yet, and refuse a worker key that is not
    its owner nor shared with. Call inside the registration's transaction: the row is locked,
    and two keys claiming one new name at once collide on its unique name (the registration
    retries and finds the winner's row)."""
    owner = ModelOwner.objects.select_for_update().filter(model_name=model_name).first()
    if owner is None:
        if Worker.objects.filter(model_name=model_name).exists():
            owner_key_id = first_owner_key_id(Worker, model_name)
        else:
            owner_key_id = caller.api_key_id if caller is not None and not caller.is_admin else None
        owner = ModelOwner.objects.create(model_name=model_name, owner_key_id=owner_key_id)
    if caller is None or caller.is_admin:
        return
    if not owner.admits(caller.api_key_id):
        raise ModelNotOwned(model_name=model_name)


def model_owner_set(
    *,
    model_name: str,
    transfer: bool = False,
    owner: str | None = None,
    share_with: Iterable[str] = (),
    unshare: Iterable[str] = (),
) -> ModelOwner:
    """With ``transfer``, give ``model_name`` to the key with prefix ``owner`` (None: admins
    only); share it with or take it from keys, named by their prefixes. An admin's action."""
    with transaction.atomic():
        record, _ = ModelOwner.objects.select_for_update().get_or_create(
            model_name=model_name, defaults={"owner_key_id": first_owner_key_id(Worker, model_name)}
        )
        if transfer:
            record.owner_key = _keys_by_prefix([owner], field="owner")[0] if owner is not None else None
            record.save(update_fields=["owner_key", "updated_at"])
        if share_with:
            record.shared_with.add(*_keys_by_prefix(list(share_with), field="share_with"))
        if unshare:
            record.shared_with.remove(*_keys_by_prefix(list(unshare), field="unshare"))
    return record


def _keys_by_prefix(prefixes: list[str], *, field: str) -> list[ApiKey]:
    keys = {key.prefix: key for key in ApiKey.objects.filter(prefix__in=prefixes)}
    unknown = [prefix for prefix in prefixes if prefix not in keys]
    if unknown:
        raise ValidationError({field: [f"no API key has the prefix {', '.join(map(repr, unknown))}"]})
    return [keys[prefix] for prefix in prefixes]


def model_owner_describe(record: ModelOwner) -> dict:
    return {
        "model_name": record.model_name,
        "owner": record.owner_key.prefix if record.owner_key else None,
        "shared_with": sorted(key.prefix for key in record.shared_with.all()),
    }
