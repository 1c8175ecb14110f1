import pytest

from tests.fake_upstream import refused_url

pytestmark = pytest.mark.django_db


def test_healthz_says_the_process_is_up(client):
    response = client.get("/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_ok_when_the_database_and_cache_answer(client):
    response = client.get("/readyz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_503_naming_the_cache_when_it_does_not_answer(client, settings):
    port = refused_url().split(":")[2].rstrip("/")
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "failed": {"cache": "unreachable (ConnectionError)"}}


def test_the_health_endpoints_carry_a_request_id_but_stay_out_of_the_log(client, caplog):
    response = client.get("/healthz")

    assert len(response["X-Request-ID"]) == 32
    assert not [record for record in caplog.records if record.name == "mmm.request"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_another_method_is_405_not_a_csrf_page(path):
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post(path)

    assert response.status_code == 405
    assert response["Allow"] == "GET"
