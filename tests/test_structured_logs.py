"""One log line per request, JSON when MMM_LOG_JSON is on, never with a secret in it."""

import json
import logging

import pytest

from console.log_format import JsonFormatter
from tests.conftest import SEED_ANSWER, seed_registration
from tests.fake_upstream import Reply

pytestmark = pytest.mark.django_db

KEY = "sk-secret-key-0123456789"


def request_lines(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "mmm.request"]


def test_a_completion_gets_one_line_with_its_request_id_model_and_outcome(api, upstream, caplog):
    url = upstream.on("/gen", Reply(status=500, json={"error": f"bad key {KEY}"}))
    api.post("/api/server/register", seed_registration(url, headers={"Authorization": f"Bearer {KEY}"}), format="json")
    caplog.clear()
    caplog.set_level(logging.INFO)

    api.post(
        "/api/v1/chat/completions?key=" + KEY,
        {"model_name": "proxyllm", "input": "hi"},
        format="json",
        headers={"X-Request-ID": "abc-1"},
    )

    [record] = request_lines(caplog)
    line = json.loads(JsonFormatter().format(record))
    assert {
        key: line[key] for key in ("request_id", "method", "path", "status", "model", "attempts", "error_code")
    } == {
        "request_id": "abc-1",
        "method": "POST",
        "path": "/api/v1/chat/completions",
        "status": 502,
        "model": "proxyllm",
        "attempts": 1,
        "error_code": "upstream_error",
    }
    assert (line["level"], line["logger"]) == ("INFO", "mmm.request")
    assert all(KEY not in record.getMessage() for record in caplog.records)


def test_values_a_client_chose_cannot_start_a_new_line(api, caplog):
    caplog.set_level(logging.INFO)

    api.post("/api/v1/chat/completions", {"model_name": "evil\nINFO forged line", "input": "hi"}, format="json")

    [record] = request_lines(caplog)
    assert "\n" not in record.getMessage()
    assert 'model="evil\\nINFO forged line"' in record.getMessage()


def test_mmm_log_json_makes_every_line_a_json_object(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import django, logging; django.setup(); "
        "logging.getLogger('mmm.request').info('done', extra={'fields': {'request_id': 'r1', 'status': 200}})"
    )
    env = {**os.environ, "MMM_LOG_JSON": "1", "DJANGO_SETTINGS_MODULE": "mmm.settings", "MMM_VAR_DIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )

    [line] = run.stderr.strip().splitlines()
    assert {key: value for key, value in json.loads(line).items() if key != "time"} == {
        "level": "INFO",
        "logger": "mmm.request",
        "msg": "done",
        "request_id": "r1",
        "status": 200,
    }


def test_a_fallback_answer_is_one_line_naming_the_model_that_answered(api, upstream, caplog):
    api.post("/api/server/register", seed_registration(upstream.on("/main", status=500, json={})), format="json")
    spare = seed_registration(upstream.on("/spare", json=SEED_ANSWER), model_name="spare")
    api.post("/api/server/register", spare, format="json")
    api.post("/api/server/policy", {"model_name": "proxyllm", "fallbacks": ["spare"]}, format="json")
    caplog.clear()
    caplog.set_level(logging.INFO)

    answer = api.post("/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, format="json")

    assert answer.status_code == 200
    [record] = request_lines(caplog)
    assert "model=proxyllm " in record.getMessage() and "answered_by_model=spare" in record.getMessage()
    assert [r for r in caplog.records if r.levelno == logging.INFO and r.name != "mmm.request"] == []


def test_a_whole_answer_is_finished_after_it_is_sent(rf, caplog):
    """The row, usage, metrics and log line wait until the server closes the response, so the
    client has its answer first; Django's test client closes it before it returns, which is why
    the tests above see the line at once."""
    from django.http import HttpResponse

    from console.middleware import RequestContextMiddleware

    caplog.set_level(logging.INFO)
    middleware = RequestContextMiddleware(lambda request: HttpResponse(b"{}", content_type="application/json"))
    response = middleware(rf.get("/api/server/workers"))
    assert request_lines(caplog) == []  # sent, not yet closed
    response.close()
    [record] = request_lines(caplog)
    assert "path=/api/server/workers" in record.getMessage()


def test_finishing_work_that_fails_is_logged_not_swallowed(rf, caplog, monkeypatch):
    """Django's close() ignores what a closer raises; the gateway must say it."""
    from django.http import HttpResponse

    from console.middleware import RequestContextMiddleware

    def broken(*args):
        raise RuntimeError("the row could not be built")

    monkeypatch.setattr(RequestContextMiddleware, "_finish", broken)
    middleware = RequestContextMiddleware(lambda request: HttpResponse(b"{}"))
    response = middleware(rf.get("/api/server/workers"))
    response.close()
    [record] = [r for r in caplog.records if r.name == "mmm.request" and r.levelno == logging.ERROR]
    assert "could not be finished" in record.getMessage()
    assert str(record.exc_info[1]) == "the row could not be built"
