"""Which scope each endpoint needs; with MMM_REQUIRE_AUTH off, a request without a key passes.

A valid key, when one is sent, always counts: its scopes, models and rate limit apply either way
(with keys off, a key the gateway does not know is no key: accounts/authentication.py).
"""

from django.conf import settings
from rest_framework.permissions import BasePermission

from accounts.caller import Caller
from accounts.models import Scope


class _ScopeRequired(BasePermission):
    scope: str  # a Scope value

    def has_permission(self, request, view) -> bool:
        caller = request.auth
        if not isinstance(caller, Caller):
            # False without a caller makes DRF answer 401 (NotAuthenticated), not 403.
            return not settings.MMM_REQUIRE_AUTH
        if not caller.has_scope(self.scope):
            self.message = f"this API key lacks the {str(self.scope)!r} scope this endpoint needs"
            self.code = "scope_missing"
            return False
        return True


class InferenceAccess(_ScopeRequired):
    """Completions: the ``inference`` scope, and the model named in the body must be allowed."""

    scope = Scope.INFERENCE
    # The seed's field and the OpenAI API's.
    model_fields = ("model_name", "model")

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        caller = request.auth
        if not isinstance(caller, Caller) or not caller.allowed_models:
            return True
        data = request.data if request.method in ("POST", "PUT", "PATCH") else request.query_params
        for field in self.model_fields:
            model_name = data.get(field) if hasattr(data, "get") else None
            if isinstance(model_name, str) and not caller.may_use_model(model_name):
                self.message = f"this API key may not use model {model_name!r}"
                self.code = "model_not_allowed"
                return False
        return True


class WorkerAccess(_ScopeRequired):
    """The registry: ``worker`` keys for their own workers (the services check ownership)."""

    scope = Scope.WORKER


class AdminAccess(_ScopeRequired):
    scope = Scope.ADMIN
