"""The egress policy: where registered URLs may point, checked on save and on every connect."""

import json
import socket

import pytest

from inference import egress
from inference import upstream as upstream_module
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
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers[host]
            ]
        return real(host, port)

    monkeypatch.setattr(egress, "getaddrinfo", resolve)
    yield answers
    upstream_module.shared_pool().clear()  # pooled connections to addresses of this test


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/gen",
        "http://[::ffff:169.254.169.254]/gen",
        "http://0.0.0.0:8000/gen",
    ],
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
    response = api.post(
        REGISTER, seed_registration("http://127.0.0.1:9/gen", health_url="http://169.254.169.254/"), format="json"
    )

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
    upstream_module.shared_pool().clear()  # a new connection, as after keep-alive ends
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
        registration = {
            "model_name": "gpt",
            "preset": "openai",
            "upstream_model": "up-model",
            "base_url": base.replace("127.0.0.1", host, 1),
        }
        assert api.post(REGISTER, registration, format="json").status_code == 200
    dns["rebound.test"] = ["169.254.169.254"]
    upstream_module.shared_pool().clear()
    ask = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "stream": True}

    for _ in range(4):  # whichever worker comes first, the stream is answered
        response = api.post("/v1/chat/completions", ask, format="json")
        assert response.status_code == 200, response.content
        assert b"".join(response.streaming_content).endswith(b"data: [DONE]\n\n")
    assert all(seen.headers["Host"].startswith("127.0.0.1") for seen in upstream.seen)


@pytest.mark.parametrize(
    "host, carries",
    [
        ("[64:ff9b::a9fe:a9fe]", "169.254.169.254"),  # NAT64, written in hex
        ("[64:ff9b::169.254.169.254]", "169.254.169.254"),  # NAT64, written with the IPv4 address
        ("[2002:a9fe:a9fe::1]", "169.254.169.254"),  # 6to4
        ("[::a9fe:a9fe]", "169.254.169.254"),  # IPv4-compatible
        ("[::169.254.169.254]", "169.254.169.254"),
        ("[2001:0:4136:e378:8000:63bf:5601:5601]", "169.254.169.254"),  # Teredo: its client is stored inverted
        ("[64:ff9b::6464:64c8]", "100.100.100.200"),  # Alibaba's metadata through NAT64
        ("[2002::1]", "0.0.0.0"),
    ],
)
def test_ipv6_forms_that_carry_a_refused_ipv4_address_are_refused(api, host, carries):
    response = api.post(REGISTER, seed_registration(f"http://{host}/gen"), format="json")

    assert response.status_code == 400
    assert f"which carries {carries}" in response.json()["errors"]["req_url_template"][0]
    assert not Worker.objects.exists()


def test_a_name_resolving_to_a_nat64_form_of_the_metadata_address_is_refused(api, dns):
    dns["nat64.test"] = ["64:ff9b::a9fe:a9fe"]

    response = api.post(REGISTER, seed_registration("http://nat64.test/gen"), format="json")

    assert response.status_code == 400
    assert "64:ff9b::a9fe:a9fe (which carries 169.254.169.254)" in response.json()["msg"]


def test_the_deny_list_applies_to_the_ipv4_address_an_ipv6_form_carries(api, settings):
    settings.MMM_UPSTREAM_DENY = ["10.20.0.0/16"]

    response = api.post(REGISTER, seed_registration("http://[64:ff9b::a14:1]/gen"), format="json")

    assert response.status_code == 400
    assert "MMM_UPSTREAM_DENY" in response.json()["msg"]


def test_ipv6_forms_carrying_allowed_addresses_and_plain_ipv6_are_allowed(api):
    for url in (
        "http://[64:ff9b::a00:1]/gen",
        "http://[2002:a00:1::1]/gen",
        "http://[::1]:9/gen",
        "http://[2001:db8::1]/gen",
    ):
        assert api.post(REGISTER, seed_registration(url), format="json").status_code == 200, url


def test_teredo_addresses_carry_their_server_and_their_client():
    from ipaddress import ip_address

    forms = egress.carried(ip_address("2001:0:4136:e378:8000:63bf:3fff:fdd2"))

    assert [str(form) for form in forms] == ["2001:0:4136:e378:8000:63bf:3fff:fdd2", "65.54.227.120", "192.0.2.45"]


@pytest.mark.parametrize(
    "name", ["Host", "content-length", "Transfer-Encoding", "CONNECTION", "Upgrade", "TE", "Trailer"]
)
def test_a_framing_or_routing_header_is_refused_at_registration_naming_it(api, name):
    response = api.post(REGISTER, seed_registration("http://127.0.0.1:9/gen", headers={name: "x"}), format="json")

    assert response.status_code == 400
    assert f"'{name}' may not be set" in response.json()["errors"]["headers"][0]
    assert not Worker.objects.exists()


def test_a_framing_header_is_refused_in_the_admin(admin_client):
    from tests.test_admin import ADD, form

    response = admin_client.post(ADD, form(headers=json.dumps({"Transfer-Encoding": "chunked"})))

    assert response.status_code == 200  # the form again, with the error
    assert "&#x27;Transfer-Encoding&#x27; may not be set" in response.content.decode()
    assert not Worker.objects.exists()


def test_a_framing_header_stored_before_the_check_is_not_sent(api, upstream):
    url = upstream.on("/gen", json=SEED_ANSWER)
    Worker.objects.create(
        model_name="proxyllm",
        req_url_template=url,
        body={"input": "{USER_PROMPT}"},
        response_extract="data.items[].attributes.answer",
        headers={"Host": "other.test", "X-Ok": "1"},
    )

    assert api.post("/api/v1/chat/completions", ASK, format="json").status_code == 200
    sent = upstream.hits("/gen")[0].headers
    assert sent["Host"] == f"127.0.0.1:{upstream.port}" and sent["X-Ok"] == "1"


def test_a_url_with_a_password_and_an_authorization_header_is_refused(api):
    registration = seed_registration(
        "http://user:pw@127.0.0.1:9/gen", headers={"authorization": "Bearer sk-configured"}
    )

    response = api.post(REGISTER, registration, format="json")

    assert response.status_code == 400
    assert "has a password and the headers an Authorization header" in response.json()["errors"]["req_url_template"][0]
    assert "pw" not in response.content.decode().replace("password", "")
    assert not Worker.objects.exists()


def test_a_url_password_alone_or_an_authorization_header_alone_is_accepted(api):
    assert api.post(REGISTER, seed_registration("http://user:pw@127.0.0.1:9/a"), format="json").status_code == 200
    registration = seed_registration("http://user@127.0.0.1:9/b", headers={"Authorization": "Bearer sk-x"})
    assert api.post(REGISTER, registration, format="json").status_code == 200
