"""Writes of client keys: issue and revoke."""

from datetime import datetime

from django.db import IntegrityError, transaction

from accounts.keys import key_cache, new_key
from accounts.models import ApiKey, secret_digest


def api_key_create(
    *,
    name: str,
    scopes: list[str],
    allowed_models: list[str] | None = None,
    rate_limit_per_minute: int | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return (row, key). The key is shown once: only its hash is stored."""
    key = ApiKey(
        name=name,
        scopes=list(scopes),
        allowed_models=list(allowed_models or []),
        rate_limit_per_minute=rate_limit_per_minute,
        expires_at=expires_at,
    )
    for attempt in range(5):  # the prefix is random; a clash with an existing one is rare
        key.prefix, secret = new_key()
        key.secret_hash = secret_digest(secret)
        key.full_clean()
        try:
            with transaction.atomic():
                key.save()
            return key, secret
        except IntegrityError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def api_key_revoke(*, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk).update(revoked=True)
    key.revoked = True
    key_cache.clear()
