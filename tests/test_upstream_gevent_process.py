"""Upstream calls from the gateway as it is served (gunicorn's gevent workers, monkey patched),
where they go through geventhttpclient (inference/upstream_gevent.py)."""

import gzip
import json
import threading
import uuid

import pytest
import requests

from tests.conftest import SEED_ANSWER, seed_registration
from tests.fake_model_apis import OpenAIServer
from tests.fake_upstream import Reply, refused_url, until_released
from tests.gateway_process import GatewayProcess, gateway_database
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

MAX_RESPONSE_BYTES = 4096


@pytest.fixture(scope="module")
def gateway_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway")
    with gateway_database(tmp) as env:
        # One worker process: its pool is the only one, so connection reuse shows on the upstream.
        env = {**env, "MMM_WEB_WORKERS": "1", "MMM_MAX_RESPONSE_BYTES": str(MAX_RESPONSE_BYTES)}
        GatewayProcess(env=env).manage("migrate", "--noinput", "-v0").check_returncode()
        yield env


@pytest.fixture(scope="module")
def gateway(gateway_env, tmp_path_factory):
    process = GatewayProcess(env=gateway_env, log_path=tmp_path_factory.mktemp("log") / "gateway.log").start()
    yield process
    process.stop()


def register_seed(gateway, url: str, **fields) -> str:
    model_name = f"seed-{uuid.uuid4().hex[:8]}"
    gateway.post("/api/server/register", seed_registration(url, model_name=model_name, **fields)).raise_for_status()
    return model_name


def ask(gateway, model_name: str) -> requests.Response:
    return gateway.post("/api/v1/chat/completions", {"input": "hi", "model_name": model_name})


def test_whole_answers_go_through_geventhttpclient_on_one_kept_alive_connection(gateway, upstream):
    model_name = register_seed(gateway, upstream.on("/gen", json=SEED_ANSWER))

    answers = [ask(gateway, model_name).json() for _ in range(3)]

    assert answers == [{"success": True, "msg": "execute succeed", "result": "I am a fake model."}] * 3
    assert len({seen.client_port for seen in upstream.hits("/gen")}) == 1
    # Written by the worker's log thread (console.log_handler), a moment after it was logged.
    wait_until(
        lambda: "upstream calls go through geventhttpclient" in gateway.log_path.read_text(),
        timeout=10,
        what="the worker's line saying which upstream client it uses",
    )


def test_a_gzip_answer_is_decoded(gateway, upstream):
    body = gzip.compress(json.dumps(SEED_ANSWER).encode())
    url = upstream.on("/gen", body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})

    assert ask(gateway, register_seed(gateway, url)).json()["result"] == "I am a fake model."


def test_an_oversized_answer_is_a_502(gateway, upstream):
    url = upstream.on("/gen", json={"data": "x" * (MAX_RESPONSE_BYTES * 4)})

    response = ask(gateway, register_seed(gateway, url))

    assert response.status_code == 502
    assert f"exceeds {MAX_RESPONSE_BYTES} bytes" in response.json()["msg"]


def test_an_upstream_slower_than_the_workers_timeout_is_a_504(gateway, upstream):
    url = upstream.on("/gen", json=SEED_ANSWER, delay=10)

    response = ask(gateway, register_seed(gateway, url, timeout=1))

    assert response.status_code == 504
    assert response.json()["code"] == "upstream_timeout"


def test_a_refused_connection_is_a_502_without_the_urls_query(gateway):
    response = ask(gateway, register_seed(gateway, refused_url("/gen?key=sk-secret")))

    assert response.status_code == 502
    assert response.json()["code"] == "upstream_unreachable"
    assert "connection refused" in response.json()["msg"] and "sk-secret" not in response.text


def test_an_address_the_egress_policy_denies_is_never_connected_to(gateway, gateway_env, upstream):
    model_name = register_seed(gateway, upstream.on("/gen", json=SEED_ANSWER))
    # A second gateway on the same database whose policy denies the address registered through the first.
    denying = GatewayProcess(env={**gateway_env, "MMM_UPSTREAM_DENY": "127.0.0.1/32"}).start()
    try:
        response = ask(denying, model_name)
    finally:
        denying.stop()

    assert response.status_code == 502
    assert "refused by the egress policy" in response.json()["msg"]
    assert upstream.hits("/gen") == []


def stream_chat(gateway, model_name: str) -> requests.Response:
    body = {"model": model_name, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    return requests.post(f"{gateway.url}/v1/chat/completions", json=body, stream=True, timeout=30)


def register_openai(gateway, base_url: str) -> str:
    model_name = f"gpt-{uuid.uuid4().hex[:8]}"
    registration = {"model_name": model_name, "preset": "openai", "base_url": base_url, "upstream_model": "up-model"}
    gateway.post("/api/server/register", registration).raise_for_status()
    return model_name


def data_lines(response: requests.Response):
    for line in response.iter_lines():
        if line.startswith(b"data: "):
            yield line[len(b"data: ") :]


def test_a_stream_is_relayed_event_by_event(gateway, upstream):
    # The upstream sends two chunks and then waits until the client has seen a word.
    server = OpenAIServer(release=threading.Event(), hold_after=2)
    model_name = register_openai(gateway, server.install(upstream))

    words, last = [], None
    with stream_chat(gateway, model_name) as response:
        for data in data_lines(response):
            last = data
            if data != b"[DONE]":
                words.append(json.loads(data)["choices"][0]["delta"].get("content") or "")
                if words[-1]:
                    server.release.set()

    assert server.released_in_time is True
    assert "".join(words) == "Hello from the fake server." and last == b"[DONE]"


def test_a_stream_the_client_leaves_is_closed_upstream(gateway, upstream):
    release = threading.Event()
    word = b'data: {"choices": [{"index": 0, "delta": {"content": "a"}}]}\n\n'

    upstream.on("/v1/chat/completions", Reply(stream=until_released(release, first=word, then=word)))
    model_name = register_openai(gateway, upstream.url("/v1"))
    try:
        with stream_chat(gateway, model_name) as response:
            next(data_lines(response))
        # The client is gone: the gateway's next write fails and it closes the upstream connection.
        seen = upstream.hits("/v1/chat/completions")[0]
        assert seen.answered.wait(20), "the upstream's stream never ended after the client left"
        assert seen.aborted
    finally:
        release.set()


def test_a_stream_the_upstream_cuts_ends_in_an_error_event(gateway, upstream):
    server = OpenAIServer(cut_after=2)
    model_name = register_openai(gateway, server.install(upstream))

    with stream_chat(gateway, model_name) as response:
        events = list(data_lines(response))

    assert b"[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == "stream_interrupted"
