"""DRF's content negotiation, answered without parsing for the Accept headers clients send.

DRF parses the Accept header into media types and matches each against every renderer on every
request: 2-3% of a completion's CPU. The gateway renders JSON only, and API clients send no
Accept, ``*/*`` or ``application/json`` (the OpenAI and Anthropic SDKs, curl, requests): for
those, with no ``?format=``, the answer is the first renderer's media type, exactly what DRF's
matching returns. Any other header goes through DRF's own negotiation, its 406 included.
"""

from rest_framework.negotiation import DefaultContentNegotiation

# Accept headers whose match is the first renderer, with its media type as it is (no header
# counts as */*, as in DRF; an empty one is DRF's to refuse).
_ANY = frozenset({None, "*/*", "application/json"})


class JsonFirstContentNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        meta = request._request.META
        if (
            not format_suffix
            and not meta.get("QUERY_STRING")
            and meta.get("HTTP_ACCEPT") in _ANY
            and renderers
            and renderers[0].media_type == "application/json"
        ):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
