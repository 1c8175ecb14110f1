"""What a gateway process loads to serve: not the packages it never uses.

Each is several MiB of every worker (mmm.lean_imports, mmm.encryption, inference.upstream's
default headers; docs/benchmark.md). Measured in a fresh interpreter that sets the gateway up as
a gunicorn worker does, registers a worker and serves a seed and a /v1 completion through it.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import SEED_ANSWER
from tests.gateway_process import ROOT

UNUSED = ("requests", "charset_normalizer", "yaml", "pygments", "psycopg2")

SERVE = r"""
import json, sys
import gevent.monkey; gevent.monkey.patch_all()
import mmm.wsgi
from django.core.management import call_command
from django.test import Client

call_command("migrate", verbosity=0)
before_serving = sorted(sys.modules)
client = Client(HTTP_HOST="127.0.0.1")
registration = json.loads(sys.argv[1])
registered = client.post("/api/server/register", registration, content_type="application/json")
seed = client.post("/api/v1/chat/completions", {"model_name": "m", "input": "hi"}, content_type="application/json")
chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
v1 = client.post("/v1/chat/completions", chat, content_type="application/json")
loaded = sorted(name for name, module in sys.modules.items() if module is not None)

# What was left out stays importable for whoever needs it later.
import requests, yaml, rest_framework.compat
print(json.dumps({
    "status": [registered.status_code, seed.status_code, v1.status_code],
    "loaded": loaded,
    "drf_requests": rest_framework.compat.requests is not None,
    "requests_later": requests.__name__,
    "yaml_later": yaml.__name__,
}))
"""


def serve_once(tmp_path, registration: dict) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mmm.settings",
        "MMM_REQUIRE_AUTH": "false",
        "MMM_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.sqlite3'}",
        "REDIS_URL": "",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", SERVE, json.dumps(registration)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def registration(url: str, **extra) -> dict:
    return {
        "model_name": "m",
        "req_url_template": url,
        "body": {"input": "{USER_PROMPT}", "model_name": "{MODEL_NAME}"},
        "response_extract": "data.items[].attributes.answer",
        **extra,
    }


def top_level(modules: list[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


@pytest.mark.timeout(180)
def test_a_worker_without_secrets_loads_neither_cryptography_nor_what_drf_would_import(tmp_path, upstream):
    result = serve_once(tmp_path, registration(upstream.on("/gen", json=SEED_ANSWER)))

    assert result["status"] == [200, 200, 200]
    loaded = top_level(result["loaded"])
    assert not loaded & {*UNUSED, "cryptography"}, sorted(loaded & {*UNUSED, "cryptography"})
    assert "rest_framework" in loaded and "geventhttpclient" in loaded  # it did serve
    assert not result["drf_requests"]
    assert result["requests_later"] == "requests" and result["yaml_later"] == "yaml"


@pytest.mark.timeout(180)
def test_a_worker_with_an_upstream_key_loads_cryptography_to_send_it(tmp_path, upstream):
    url = upstream.on("/gen", json=SEED_ANSWER)

    result = serve_once(tmp_path, registration(url, headers={"Authorization": "Bearer sk-test"}))

    assert result["status"] == [200, 200, 200]
    assert "cryptography" in top_level(result["loaded"])
    assert upstream.hits("/gen")[0].headers["Authorization"] == "Bearer sk-test"
