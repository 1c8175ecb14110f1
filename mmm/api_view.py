"""The gateway's DRF view: a served request is freed when its response closes, not by the collector.

DRF ties every request into reference cycles: the view keeps its request (``view.request``), the
request's parser context keeps the view and the request itself (``parser_context["view"]``,
``["request"]``), and the view keeps its response. Reference counting cannot free a cycle, so
everything a request touched (the Django and DRF requests, the view, the response, the parsed
body, the usage reservation, gunicorn's request and response objects; about 55 objects a
completion) waited for the garbage collector. At c=32 a collection ran every request or two,
each walked the 32 requests in flight and moved them into the older generations, and the
older generations' collections walked them again: about 50 µs of a proxied completion's 0.85 ms
went to the collector, and a full collection paused the worker for about 10 ms (docs/benchmark.md).

Once the response is closed (the body sent, a stream ended however it ended: Django closes the
response then) nothing reads the view or the request's parser context again, so the view drops
what it holds and the parser context its links back. The cycles are gone and the objects are
freed as soon as the last reference to them goes, as every other object of the request is.
"""

from rest_framework.views import APIView

# What DRF's parser and renderer contexts hold that leads back to the request (their "args",
# "kwargs" and "encoding" do not).
_CONTEXT_LINKS = ("view", "request", "response")


# (No docstring: drf-spectacular would give it, as their description, to every view without one.)
class GatewayAPIView(APIView):
    def dispatch(self, request, *args, **kwargs):
        response = super().dispatch(request, *args, **kwargs)
        # (A closer holds the view until it runs: one more link, dropped when it runs.)
        response._resource_closers.append(self._let_go)
        return response

    def _let_go(self) -> None:
        request, response = self.__dict__.get("request"), self.__dict__.get("response")
        # A DRF Response (an error's, most often) has a renderer context that names the view,
        # the request and the response itself; the parser context names the view and the request.
        for context in (getattr(request, "parser_context", None), getattr(response, "renderer_context", None)):
            if isinstance(context, dict):
                for name in _CONTEXT_LINKS:
                    context.pop(name, None)
        self.__dict__.clear()  # request, response, args, kwargs, headers: the view's links to them
