"""Sessions, the signed-in user and messages: the admin's, not an API client's.

An API call from an SDK carries no session cookie, yet Django's session, authentication and
messages middleware would each build their lazy objects for it (about 3% of a completion's
CPU) for nothing to read: the API authenticates keys, and a staff user only by a session
(accounts.authentication.StaffSessionAuthentication), which needs the cookie. These subclasses
skip their work for a request to the API (``/api/``, ``/v1/``) that has no session cookie; with
one (a staff user calling the API from the browser) and everywhere else they do all of it.
Their responses are unchanged: without a session or messages there is no cookie to set.
"""

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware

_API_PREFIXES = ("/api/", "/v1/")


def _api_call_without_session(request) -> bool:
    return request.path_info.startswith(_API_PREFIXES) and settings.SESSION_COOKIE_NAME not in request.COOKIES


class BrowserSessionMiddleware(SessionMiddleware):
    def process_request(self, request):
        if not _api_call_without_session(request):
            super().process_request(request)

    def process_response(self, request, response):
        if not hasattr(request, "session"):
            return response
        return super().process_response(request, response)


class BrowserAuthenticationMiddleware(AuthenticationMiddleware):
    def process_request(self, request):
        if hasattr(request, "session"):
            super().process_request(request)


class BrowserMessageMiddleware(MessageMiddleware):
    def process_request(self, request):
        if hasattr(request, "session"):
            super().process_request(request)
