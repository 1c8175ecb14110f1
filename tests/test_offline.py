import pytest

from registry.models import Worker
from tests.conftest import seed_registration

pytestmark = pytest.mark.django_db

URL = "https://xxx/openapi/xxx/inference/query"


def test_it_removes_the_worker_with_the_seed_answer(api):
    api.post("/api/server/register", seed_registration(URL, model_name="chatglm2-6b"), format="json")

    response = api.post("/api/server/offline", {"model_name": "chatglm2-6b", "req_url_template": URL}, format="json")

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "msg": f"remove llm worker(model_name=chatglm2-6b, url={URL}) succeed!",
    }
    assert not Worker.objects.exists()


def test_an_unknown_worker_is_a_404(api):
    response = api.post("/api/server/offline", {"model_name": "ghost", "req_url_template": URL}, format="json")

    assert response.status_code == 404
    assert response.json()["code"] == "worker_not_found"
    assert response.json()["success"] is False


def test_it_only_removes_the_named_worker(api):
    api.post("/api/server/register", seed_registration(URL), format="json")
    api.post("/api/server/register", seed_registration(URL + "2"), format="json")

    api.post("/api/server/offline", {"model_name": "proxyllm", "req_url_template": URL}, format="json")

    assert list(Worker.objects.values_list("req_url_template", flat=True)) == [URL + "2"]


def test_it_needs_both_fields(api):
    response = api.post("/api/server/offline", {"model_name": "x"}, format="json")

    assert response.status_code == 400
    assert "req_url_template" in response.json()["errors"]
