"""OpenTelemetry: a real gunicorn gateway exports its spans over OTLP/HTTP to a receiver the
test runs; the client's traceparent reaches the upstream; no prompt or key is in any span."""

import json
import uuid

import pytest
import requests

from mmm.tracing import tracing_wanted
from tests.fake_upstream import Reply
from tests.gateway_process import GatewayProcess, free_port, gateway_database
from tests.otlp_receiver import OtlpReceiver

PROMPT = "the-secret-prompt-words-42"
UPSTREAM_KEY = "sk-upstream-tracing-0123456789"


@pytest.fixture
def receiver():
    server = OtlpReceiver().start()
    yield server
    server.stop()


@pytest.mark.e2e
def test_a_request_and_its_attempts_reach_the_tracing_backend(tmp_path, receiver, upstream):
    upstream.on("/fail-a", Reply(status=503, json={"error": "busy"}))
    upstream.on(
        "/v1/chat/completions",
        Reply(
            json={
                "id": "c1",
                "object": "chat.completion",
                "created": 1,
                "model": "llama-small",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            }
        ),
    )
    with gateway_database(tmp_path) as env:
        env = {
            **env,
            "MMM_WEB_WORKERS": "1",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "mmm-under-test",
        }
        gateway = GatewayProcess(env=env)
        gateway.manage("migrate", "--noinput", "-v0").check_returncode()
        gateway.start()
        try:
            # The prompt goes in the URL, the key in a header. The second worker refuses connections:
            # its error is recorded on the client span, and must not quote the URL it failed on.
            for url in (upstream.url("/fail-a"), f"http://127.0.0.1:{free_port()}/refused"):
                gateway.post(
                    "/api/server/register",
                    {
                        "model_name": "big",
                        "req_url_template": url + "?q={USER_PROMPT}",
                        "body": {"input": "{USER_PROMPT}"},
                        "headers": {"Authorization": f"Bearer {UPSTREAM_KEY}"},
                    },
                ).raise_for_status()
            gateway.post(
                "/api/server/register",
                {
                    "model_name": "small",
                    "kind": "openai",
                    "req_url_template": upstream.url("/v1"),
                    "upstream_model": "llama-small",
                    "headers": {"Authorization": f"Bearer {UPSTREAM_KEY}"},
                },
            ).raise_for_status()
            gateway.post("/api/server/policy", {"model_name": "big", "fallbacks": ["small"]}).raise_for_status()

            trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
            answer = requests.post(
                gateway.url + "/v1/chat/completions",
                json={"model": "big", "messages": [{"role": "user", "content": PROMPT}]},
                headers={"traceparent": f"00-{trace_id}-{parent_id}-01"},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text

            spans = receiver.wait_for(
                lambda spans: (
                    sum(1 for s in spans if s.trace_id == trace_id and s.name.startswith("upstream attempt")) >= 3
                    and any(s.trace_id == trace_id and s.kind == 2 for s in spans)
                ),
                what="the request's server span and its three attempt spans",
            )
        finally:
            gateway.stop()

    mine = [span for span in spans if span.trace_id == trace_id]
    server = next(span for span in mine if span.kind == 2)  # SERVER
    assert server.parent_span_id == parent_id  # the client's traceparent was taken
    assert server.service == "mmm-under-test"
    assert server.attributes["gen_ai.request.model"] == "big"
    assert server.attributes["gen_ai.usage.input_tokens"] == 11
    assert server.attributes["gen_ai.usage.output_tokens"] == 7
    assert server.attributes["mmm.attempts"] == 1  # on the model that answered

    attempts = sorted(
        (s for s in mine if s.name.startswith("upstream attempt")),
        key=lambda s: s.attributes["mmm.attempt"] + 10 * s.attributes["mmm.fallback"],
    )
    assert [
        (
            s.attributes["gen_ai.request.model"],
            s.attributes["mmm.attempt"],
            s.attributes["mmm.retry"],
            s.attributes["mmm.fallback"],
            s.attributes["mmm.outcome"],
        )
        for s in attempts
    ] == [
        ("big", 1, False, False, "failed, retried elsewhere"),
        ("big", 2, True, False, "failed, retried elsewhere"),
        ("small", 1, False, True, "ok"),
    ]
    assert all(s.parent_span_id == server.span_id for s in attempts)
    ok = attempts[-1]
    assert (ok.attributes["gen_ai.provider.name"], ok.attributes["gen_ai.response.model"]) == ("openai", "llama-small")
    assert ok.attributes["gen_ai.usage.input_tokens"] == 11

    # Each attempt has its HTTP client span, and the upstream got that span as its parent.
    clients = [s for s in mine if s.kind == 3]  # CLIENT
    assert {c.parent_span_id for c in clients} == {a.span_id for a in attempts}
    sent = [seen.headers.get("traceparent", "") for seen in upstream.seen if seen.path != "/v1/traces"]
    assert len(sent) == 2  # the refusing worker got nothing
    assert {header.split("-")[1] for header in sent} == {trace_id}
    assert {header.split("-")[2] for header in sent} <= {c.span_id for c in clients}
    refused = next(c for c in clients if "refused" in c.attributes["http.url"])
    assert [name for name, _ in refused.events] == ["exception"]
    message = refused.events[0][1]["exception.message"]
    assert "Connection refused" in message and "/refused" not in message and "?q=" not in message

    # Neither the prompt nor the upstream key is anywhere in what was exported.
    exported = json.dumps([vars(span) for span in spans], default=str)
    assert PROMPT not in exported and UPSTREAM_KEY not in exported
    assert "q=%7BUSER_PROMPT%7D" in exported or "q={USER_PROMPT}" in exported  # the template, not the rendered URL


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
    ],
)
def test_tracing_is_off_unless_the_standard_variables_ask_for_it(environ, wanted):
    assert tracing_wanted(environ) is wanted
