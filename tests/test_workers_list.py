import pytest

from registry.models import Worker
from tests.conftest import seed_registration

pytestmark = pytest.mark.django_db


def register(api, **fields):
    response = api.post("/api/server/register", seed_registration(**fields), format="json")
    assert response.status_code == 200, response.json()


def test_it_lists_workers_as_a_json_list_with_their_state(api):
    register(api, url="http://127.0.0.1:9001/gen")
    register(api, url="https://models.example/glm", model_name="chatglm2-6b", weight=0, owner="ops")

    response = api.get("/api/server/workers")

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert isinstance(body["data"], list)
    by_name = {row["model_name"]: row for row in body["data"]}
    assert by_name["chatglm2-6b"]["req_url_template"] == "https://models.example/glm"
    assert by_name["chatglm2-6b"]["weight"] == 0
    assert by_name["chatglm2-6b"]["owner"] == "ops"
    for row in body["data"]:
        for key in ("enabled", "health_state", "last_probe_at", "last_error", "latency_ms", "consecutive_failures"):
            assert key in row


def test_it_filters_by_model_name(api):
    register(api, url="http://127.0.0.1:9001/gen")
    register(api, url="http://127.0.0.1:9002/gen", model_name="other")

    data = api.get("/api/server/workers", {"model_name": "other"}).json()["data"]

    assert [row["model_name"] for row in data] == ["other"]


def test_it_never_shows_header_values(api):
    register(api, url="http://127.0.0.1:9001/gen", headers={"Authorization": "Bearer sk-very-secret"})

    response = api.get("/api/server/workers")

    assert "sk-very-secret" not in response.content.decode()
    assert response.json()["data"][0]["header_names"] == ["Authorization"]


def test_an_empty_registry_lists_nothing(api):
    assert api.get("/api/server/workers").json() == {"success": True, "data": []}
    assert not Worker.objects.exists()
