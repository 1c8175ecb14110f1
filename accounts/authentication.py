"""DRF authentication: an API key (Bearer or X-API-Key), or a signed-in staff user of the admin."""

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication

from accounts.caller import Caller
from accounts.keys import key_cache


def presented_key(request) -> str | None:
    """The key as sent: ``Authorization: Bearer <key>`` (what OpenAI's SDKs send) or ``X-API-Key``."""
    authorization = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    value = request.META.get("HTTP_X_API_KEY", "").strip()
    return value or None


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        key = presented_key(request)
        if key is None:
            return None
        caller = key_cache.caller_for(key)
        if caller is None and not settings.MMM_REQUIRE_AUTH:
            # Keys off: a key the gateway does not know (OpenAI(api_key="EMPTY"), the placeholder
            # vLLM, Ollama and LiteLLM accept) is no key. A real key still brings its scopes and limits.
            return None
        if caller is None:
            # Never quote the key back: it may be a real key sent to the wrong place.
            raise exceptions.AuthenticationFailed("the API key is not valid, or it was revoked or has expired")
        return caller, caller

    def authenticate_header(self, request) -> str:
        # Its presence makes DRF answer 401 (not 403) to a request without a usable key.
        return 'Bearer realm="mmm"'


class StaffSessionAuthentication(SessionAuthentication):
    """A staff user signed in to the admin may use the API from the browser, with admin rights.

    DRF's session authentication checks the CSRF token on writes, so another site cannot make
    the browser call the API with the operator's cookie.
    """

    def authenticate(self, request):
        django_request = request._request
        # No session, no staff user: without this, every API call would load the lazy user (a
        # session lookup and an AnonymousUser) to learn as much. Most calls send no cookie at all,
        # and need neither the cookies parsed nor a setting read.
        if not django_request.META.get("HTTP_COOKIE") or settings.SESSION_COOKIE_NAME not in django_request.COOKIES:
            return None
        user = getattr(django_request, "user", None)
        if not user or not user.is_active or not user.is_staff:
            return None
        self.enforce_csrf(request)
        caller = Caller.for_staff(user)
        return caller, caller
