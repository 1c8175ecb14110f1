"""The session, auth and messages middleware skip an API call that has no session cookie."""

import pytest
from django.conf import settings
from django.http import HttpResponse
from django.test import RequestFactory

from mmm.browser_middleware import (
    BrowserAuthenticationMiddleware,
    BrowserMessageMiddleware,
    BrowserSessionMiddleware,
)

factory = RequestFactory()


def seen_by_view(request):
    """Run the three as Django would and return what the view saw on the request."""
    seen = {}

    def view(request):
        seen.update(session=hasattr(request, "session"), user=hasattr(request, "user"))
        seen["messages"] = hasattr(request, "_messages")
        return HttpResponse("ok")

    chain = BrowserSessionMiddleware(BrowserAuthenticationMiddleware(BrowserMessageMiddleware(view)))
    response = chain(request)
    return seen, response


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/v1/chat/completions", "/api/server/workers"])
def test_an_api_call_without_a_session_cookie_skips_them(path, db):
    seen, response = seen_by_view(factory.post(path))
    assert seen == {"session": False, "user": False, "messages": False}
    assert not response.cookies


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/admin/", "/admin/dashboard/"])
def test_with_a_session_cookie_or_outside_the_api_they_run(path, db):
    request = factory.get(path)
    if path.startswith("/v1/"):
        request.COOKIES[settings.SESSION_COOKIE_NAME] = "not-a-real-session"
    seen, _ = seen_by_view(request)
    assert seen == {"session": True, "user": True, "messages": True}
