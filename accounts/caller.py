"""Who is calling: an API key or a signed-in staff user, as the request path sees it.

A plain frozen value, cached per process, so a request checks scopes, models and its rate
limit without touching the database.
"""

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from accounts.models import Scope


@dataclass(frozen=True)
class Caller:
    label: str  # "key <name> (<prefix>…)" or "staff <username>": what logs and the audit show
    scopes: frozenset[str]
    allowed_models: frozenset[str] = frozenset()
    rate_limit_per_minute: int | None = None
    expires_at: datetime | None = None
    api_key_id: int | None = None
    api_key_prefix: str | None = None  # unique and never reused, unlike an id after a restore
    user_id: int | None = None

    # DRF and Django read these on request.user.
    is_authenticated = True
    is_active = True

    @classmethod
    def for_staff(cls, user) -> "Caller":
        """A staff user signed in to the admin: admin rights, as in the admin itself."""
        return cls(label=f"staff {user.get_username()}", scopes=frozenset({Scope.ADMIN}), user_id=user.pk)

    def has_scope(self, scope: str) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes

    @property
    def is_admin(self) -> bool:
        return Scope.ADMIN in self.scopes

    def may_use_model(self, model_name: str) -> bool:
        return not self.allowed_models or model_name in self.allowed_models

    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    def __str__(self) -> str:
        return self.label
