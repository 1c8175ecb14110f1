"""The fast content negotiation gives what DRF's own gives, for the headers it answers itself."""

import pytest
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from mmm.negotiation import JsonFirstContentNegotiation

factory = APIRequestFactory()


def _request(**headers):
    return Request(factory.get("/v1/models", **headers))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_ACCEPT": "*/*"},
        {"HTTP_ACCEPT": "application/json"},
        {"HTTP_ACCEPT": "application/json; indent=4"},
        {"HTTP_ACCEPT": "text/html,application/xhtml+xml,*/*;q=0.8"},
        {"HTTP_ACCEPT": "application/*"},
    ],
)
def test_it_picks_what_drf_picks(headers):
    renderers = [JSONRenderer()]
    mine = JsonFirstContentNegotiation().select_renderer(_request(**headers), renderers)
    drf = DefaultContentNegotiation().select_renderer(_request(**headers), renderers)
    assert (type(mine[0]), mine[1]) == (type(drf[0]), drf[1])


@pytest.mark.parametrize("accept", ["", "text/html", "image/png"])
def test_what_drf_refuses_it_refuses(client, accept):
    response = client.get("/v1/models", HTTP_ACCEPT=accept)
    assert response.status_code == 406
    assert response.json()["error"]
