"""The egress policy: where registered URLs may point, checked on save and on every connect."""

import socket

import pytest

from inference import egress, upstream as upstream_module
from registry.models import Worker
from tests.conftest import SEED_ANSWER, seed_registration

pytestmark = pytest.mark.django_db

REGISTER = "/api/server/register"
ASK = {"model_name": "proxyllm", "input": "hi"}


@pytest.fixture
def dns(monkeypatch):
    """Names the test resolves: {name: [addresses]}; other names resolve as usual."""
    answers: dict[str, list[str]] = {}
    real = egress.getaddrinfo

    def resolve(host, port):
        if host in answers:
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]
        return real(host, port)

    monkeypatch.setattr(egress, "getaddrinfo", resolve)
    yield answers
    upstream_module.shared_session().close()  # pooled connections to addresses of this test


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/gen", "http://[::ffff:169.254.169.254]/gen", "http://0.0.0.0:8000/gen"]
)
def test_a_registration_pointing_at_a_link_local_or_metadata_address_is_refused(api, url):
    response = api.post(REGISTER, seed_registration(url), format="json")

    assert response.status_code == 400
    assert "egress policy" in response.json()["errors"]["req_url_template"][0]
    assert not Worker.objects.exists()


def test_a_registration_at_a_name_that_resolves_to_the_metadata_address_is_refused(api, dns):
    dns["metadata.internal.test"] = ["169.254.169.254"]

    response = api.post(REGISTER, seed_registration("http://metadata.internal.test/gen"), format="json")

    assert response.status_code == 400
    assert "resolves to 169.254.169.254" in response.json()["msg"]
    assert not Worker.objects.exists()


def test_a_name_with_one_good_and_one_metadata_address_is_refused(api, dns):
    dns["mixed.test"] = ["127.0.0.1", "169.254.169.254"]

    assert api.post(REGISTER, seed_registration("http://mixed.test/gen"), format="json").status_code == 400


def test_a_health_url_is_checked_too(api):
    response = api.post(REGISTER, seed_registration("http://127.0.0.1:9/gen", health_url="http://169.254.169.254/"), format="json")

    assert response.status_code == 400
    assert "health_url" in response.json()["errors"]


def test_a_link_local_range_named_in_the_allow_list_is_allowed(api, settings):
    settings.MMM_UPSTREAM_ALLOW = ["169.254.10.0/24"]

    assert api.post(REGISTER, seed_registration("http://169.254.10.5/gen"), format="json").status_code == 200
    assert api.post(REGISTER, seed_registration("http://169.254.169.254/gen"), format="json").status_code == 400


def test_an_allow_list_admits_only_what_it_names(api, settings, dns):
    settings.MMM_UPSTREAM_ALLOW = ["10.0.0.0/8", "*.models.test"]
    dns["gpu1.models.test"] = ["192.168.1.20"]

    assert api.post(REGISTER, seed_registration("http://10.1.2.3/gen"), format="json").status_code == 200
    assert api.post(REGISTER, seed_registration("http://gpu1.models.test/gen"), format="json").status_code == 200
    refused = api.post(REGISTER, seed_registration("http://127.0.0.1:9/gen"), format="json")
    assert refused.status_code == 400
    assert "not in MMM_UPSTREAM_ALLOW" in refused.json()["msg"]


def test_the_deny_list_refuses_ranges_and_host_names(api, settings):
    settings.MMM_UPSTREAM_DENY = ["192.168.0.0/16", "billing.internal"]

    assert api.post(REGISTER, seed_registration("http://192.168.3.4/gen"), format="json").status_code == 400
    assert api.post(REGISTER, seed_registration("http://billing.internal/gen"), format="json").status_code == 400
    assert api.post(REGISTER, seed_registration("http://10.0.0.1/gen"), format="json").status_code == 200


def test_a_host_that_does_not_resolve_yet_may_be_registered(api):
    assert api.post(REGISTER, seed_registration("https://model-server.invalid/gen"), format="json").status_code == 200


def test_the_connection_goes_to_the_checked_address_and_a_rebound_name_is_refused_on_connect(api, upstream, dns):
    upstream.on("/gen", json=SEED_ANSWER)
    dns["model.test"] = ["127.0.0.1"]  # no real DNS knows this name: only the checked address works
    url = f"http://model.test:{upstream.port}/gen"
    assert api.post(REGISTER, seed_registration(url), format="json").status_code == 200

    answered = api.post("/api/v1/chat/completions", ASK, format="json")
    assert answered.status_code == 200, answered.json()
    assert upstream.hits("/gen")[0].headers["Host"] == f"model.test:{upstream.port}"

    dns["model.test"] = ["169.254.169.254"]  # the name now points at the metadata service
    upstream_module.shared_session().close()  # a new connection, as after keep-alive ends
    refused = api.post("/api/v1/chat/completions", ASK, format="json")

    assert refused.status_code == 502
    assert refused.json()["code"] == "upstream_unreachable"
    assert "refused by the egress policy" in refused.json()["msg"]
    assert len(upstream.hits("/gen")) == 1


def test_an_upstream_answering_302_is_not_followed(api, upstream):
    elsewhere = upstream.on("/elsewhere", json=SEED_ANSWER)
    url = upstream.on("/gen", status=302, headers={"Location": elsewhere}, text="")
    api.post(REGISTER, seed_registration(url), format="json")

    response = api.post("/api/v1/chat/completions", ASK, format="json")

    assert response.status_code == 502
    assert "HTTP 302" in response.json()["msg"]
    assert upstream.hits("/elsewhere") == []


def test_a_policy_entry_that_is_neither_a_range_nor_a_name_fails_loudly(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.MMM_UPSTREAM_DENY = ["http://x/"]
    with pytest.raises(ImproperlyConfigured, match="neither a CIDR range nor a host name"):
        egress.policy()


def test_a_v1_stream_to_a_rebound_name_fails_over_to_another_worker(api, upstream, dns):
    from tests.fake_model_apis import OpenAIServer

    base = OpenAIServer().install(upstream)
    dns["rebound.test"] = ["127.0.0.1"]
    for host in ("rebound.test", "127.0.0.1"):
        registration = {"model_name": "gpt", "preset": "openai", "upstream_model": "up-model",
                        "base_url": base.replace("127.0.0.1", host, 1)}
        assert api.post(REGISTER, registration, format="json").status_code == 200
    dns["rebound.test"] = ["169.254.169.254"]
    upstream_module.shared_session().close()
    ask = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "stream": True}

    for _ in range(4):  # whichever worker comes first, the stream is answered
        response = api.post("/v1/chat/completions", ask, format="json")
        assert response.status_code == 200, response.content
        assert b"".join(response.streaming_content).endswith(b"data: [DONE]\n\n")
    assert all(seen.headers["Host"].startswith("127.0.0.1") for seen in upstream.seen)
