"""MMM_MAX_REQUEST_BYTES holds on every endpoint that takes a body, with keys on or off."""

import pytest

from registry.models import Worker
from tests.conftest import bearer, seed_registration

pytestmark = pytest.mark.django_db

BODY_ENDPOINTS = ["/api/server/register", "/api/server/offline", "/api/v1/chat/completions"]


@pytest.fixture
def small_limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = settings.MMM_MAX_REQUEST_BYTES = 4096


@pytest.mark.parametrize("path", BODY_ENDPOINTS)
def test_a_body_over_the_limit_is_a_413_on_every_endpoint(api, small_limit, path):
    payload = seed_registration("http://127.0.0.1:9/gen", input="x" * 5000, owner="y" * 100)

    response = api.post(path, payload, format="json")

    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"
    assert not Worker.objects.exists()


@pytest.mark.parametrize("path", BODY_ENDPOINTS)
def test_a_body_over_the_limit_is_a_413_with_a_key_whose_model_list_is_checked(
    api, small_limit, make_key, require_auth, path
):
    key = make_key("inference", "worker", allowed_models=["proxyllm"])

    response = api.post(path, {"model_name": "proxyllm", "input": "x" * 5000}, format="json", **bearer(key))

    assert response.status_code == 413
