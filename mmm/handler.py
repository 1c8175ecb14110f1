"""Django's WSGI handler, with a short middleware chain for the completion endpoints.

Every request passes all of MIDDLEWARE: two calls per layer, and work in most of them. For a
completion request that carries no cookie most layers have nothing to do: WhiteNoise serves
only static paths, the session, user and messages layers step aside without a session cookie
(mmm.browser_middleware), CSRF exempts the API's views and has no cookie to rotate, and
CommonMiddleware's slash redirect never applies to a path that resolves. Such a request goes
through the chain of MIDDLEWARE without those (SKIPPED_MIDDLEWARE): every other layer, in its
order (security headers, the request id, log line and request-log row, the frame header, and
whatever an operator or an instrumentation such as OpenTelemetry's adds), plus the
Content-Length CommonMiddleware would set, so its response is the one the full chain gives. Every
other request, and a completion that sends any cookie, takes the full chain.

The two chains share one ``_get_response``, so a view hook of a kept layer (OpenTelemetry's
names the span's route) runs from the full chain's instance of the same class; the skipped
CSRF layer's hook runs too and passes the API's exempt views, as it does on the full chain.

The lean paths also keep their URL match: resolving walks the patterns for every request, and
these few paths always resolve to the same view.
"""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.urls import get_resolver, set_urlconf
from django.utils.log import log_response
from django.utils.module_loading import import_string

# The endpoints a client calls for every completion. Exact paths: only these skip layers.
LEAN_PATHS = frozenset(
    {
        "/api/v1/chat/completions",
        "/api/v1/chat/completions/",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/messages",
        "/v1/responses",
    }
)
# The layers with nothing to do for a completion without cookies (see above).
SKIPPED_MIDDLEWARE = frozenset(
    {
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "mmm.browser_middleware.BrowserSessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "mmm.browser_middleware.BrowserAuthenticationMiddleware",
        "mmm.browser_middleware.BrowserMessageMiddleware",
    }
)


def takes_lean_chain(request) -> bool:
    return request.path_info in LEAN_PATHS and not request.META.get("HTTP_COOKIE")


# Where get_response leaves the response in the request's environ, for __call__'s failure path.
_RESPONSE_KEY = "mmm.response"


class GatewayWSGIHandler(WSGIHandler):
    def __call__(self, environ, start_response):
        try:
            return super().__call__(environ, start_response)
        except BaseException:
            # The server refused the head (gunicorn raises on a header it finds invalid), so it
            # never gets the response to close: close it here, or its closers would never run
            # (console.middleware's request-log row, usage settlement, metrics and log line).
            response = environ.get(_RESPONSE_KEY)
            if response is not None:
                response.close()
            raise
        finally:
            environ.pop(_RESPONSE_KEY, None)

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async)
        if is_async:  # (only WSGI builds this handler)
            raise ImproperlyConfigured("GatewayWSGIHandler is a WSGI handler")
        self._lean_chain = self._chain_of([path for path in settings.MIDDLEWARE if path not in SKIPPED_MIDDLEWARE])
        self._lean_matches = {}

    def _chain_of(self, paths: list[str]) -> object:
        """Django's chain over ``paths``, around the same _get_response (whose view middleware
        lists are the full chain's)."""
        handler = convert_exception_to_response(self._get_response)
        for path in reversed(paths):
            middleware = import_string(path)
            if not getattr(middleware, "sync_capable", True):
                raise ImproperlyConfigured(f"{path} is async-only; the gateway's WSGI handler needs sync middleware")
            try:
                layer = middleware(handler)
            except MiddlewareNotUsed:
                continue  # as Django's own chain skips it
            handler = convert_exception_to_response(layer)
        return handler

    def get_response(self, request):
        # BaseHandler.get_response, choosing the chain (one handler serves every thread).
        request.mmm_lean_chain = lean = takes_lean_chain(request)
        if not lean:
            # (A lean path's URL match is kept, and with no URLconf set reverse() uses
            # ROOT_URLCONF all the same; request_finished unsets it after every request. Setting
            # it is an asgiref Local's lock and context variable: 2.5 µs with the unset.)
            set_urlconf(settings.ROOT_URLCONF)
        response = (self._lean_chain if lean else self._middleware_chain)(request)
        if lean and not response.streaming and not response.has_header("Content-Length"):
            # CommonMiddleware's response hook: without it gunicorn would chunk the body.
            response.headers["Content-Length"] = str(len(response.content))
        response._resource_closers.append(request.close)
        request.environ[_RESPONSE_KEY] = response
        if response.status_code >= 400:
            log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
        return response

    def resolve_request(self, request):
        if not getattr(request, "mmm_lean_chain", False) or hasattr(request, "urlconf"):
            return super().resolve_request(request)
        resolver = get_resolver()  # a new one when the URLconf changes (tests)
        key = (resolver, request.path_info)
        match = self._lean_matches.get(key)
        if match is None:
            match = self._lean_matches.setdefault(key, resolver.resolve(request.path_info))
        request.resolver_match = match
        return match
