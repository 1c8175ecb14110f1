"""Schemathesis over every operation of /api/schema/, against the gateway under gunicorn with
keys on: no 5xx, every answer as the document says (status, content type, headers, body), what it
calls invalid refused, a request without a key refused, an undocumented method answered 405."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SEED_ANSWER, seed_registration
from tests.fake_upstream import FakeUpstream, Reply
from tests.gateway_process import ROOT, GatewayProcess, gateway_database

pytestmark = pytest.mark.e2e

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",  # what the document says is invalid is refused
        "missing_required_header",
        "unsupported_method",  # a method the document does not list gets 405
        "allow_header_conformance",
        "ignored_auth",  # an operation that says it needs a key refuses a request without one
    )
)
EXAMPLES = os.environ.get("MMM_SCHEMATHESIS_EXAMPLES", "15")


def _model_answer(seen) -> Reply:
    if seen.path.endswith("/chat/completions"):
        return Reply(
            json={
                "id": "c1",
                "object": "chat.completion",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            }
        )
    return Reply(json=SEED_ANSWER)


@pytest.fixture
def model_server():
    server = FakeUpstream(default=_model_answer).start()
    yield server
    server.stop()


def test_every_operation_answers_as_documented(tmp_path, model_server):
    with gateway_database(tmp_path) as env:
        gateway = GatewayProcess(env={**env, "MMM_REQUIRE_AUTH": "true"})
        gateway.manage("migrate", "--noinput", "-v0").check_returncode()
        key = gateway.create_api_key(scope="admin")
        gateway.headers = {"Authorization": f"Bearer {key}"}
        gateway.start()
        try:
            gateway.post(
                "/api/server/register", seed_registration(model_server.url("/api/generate"))
            ).raise_for_status()
            gateway.post(
                "/api/server/register",
                {"model_name": "gpt", "kind": "openai", "req_url_template": model_server.url("/v1")},
            ).raise_for_status()
            run = subprocess.run(
                [
                    str(Path(sys.executable).parent / "schemathesis"),
                    "run",
                    f"{gateway.url}/api/schema/",
                    "--checks",
                    CHECKS,
                    "--max-examples",
                    EXAMPLES,
                    "--seed",
                    "14",
                    "--workers",
                    "2",
                    "--phases",
                    "examples,coverage,fuzzing",
                    "--request-timeout",
                    "30",
                    "--no-color",
                    "--header",
                    f"Authorization: Bearer {key}",
                ],
                cwd=tmp_path,  # schemathesis keeps its cache in the working directory
                capture_output=True,
                text=True,
                timeout=480,
                env={
                    **os.environ,
                    "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
                    "MMM_SCHEMATHESIS_UPSTREAM": model_server.url("/api/generate"),
                    "PYTHONPATH": str(ROOT),
                },
            )
        finally:
            gateway.stop()
    log = gateway.log_path.read_text()
    assert run.returncode == 0, f"{run.stdout[-12000:]}\n{run.stderr[-3000:]}\n--- gateway log ---\n{log[-4000:]}"
