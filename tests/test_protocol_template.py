"""template workers through /v1: usage from usage_extract, n as several calls, tools refused."""

import pytest

from tests.chat_helpers import WEATHER_TOOL, chat, stream_events, streamed_text
from tests.conftest import seed_registration

pytestmark = pytest.mark.django_db

ANSWER = {"data": {"text": "templated answer"}, "meta": {"tokens": {"input_tokens": 4, "output_tokens": 2}}}


@pytest.fixture
def templated(api, upstream):
    url = upstream.on("/gen", json=ANSWER)
    response = api.post(
        "/api/server/register",
        seed_registration(url, model_name="tpl", response_extract="data.text", usage_extract="meta.tokens"),
        format="json",
    )
    assert response.status_code == 200, response.content
    listed = api.get("/api/server/workers?model_name=tpl").json()["data"]
    assert [worker["usage_extract"] for worker in listed] == ["meta.tokens"]
    return upstream


def test_usage_extract_gives_the_answers_usage_in_openai_names(api, templated):
    body = chat(api, model="tpl", messages=[{"role": "user", "content": "Hi"}]).json()

    assert body["choices"][0]["message"]["content"] == "templated answer"
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}


def test_a_stream_with_include_usage_ends_with_the_usage_chunk(api, templated):
    events = stream_events(
        chat(
            api,
            model="tpl",
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Hi"}],
        )
    )

    assert streamed_text(events) == "templated answer"
    assert events[-2]["usage"]["total_tokens"] == 6 and events[-1] == "[DONE]"


def test_n_is_that_many_calls(api, templated):
    body = chat(api, model="tpl", n=2, messages=[{"role": "user", "content": "Hi"}]).json()

    assert [choice["index"] for choice in body["choices"]] == [0, 1]
    assert len(templated.hits("/gen")) == 2
    assert body["usage"]["total_tokens"] == 12


def test_tools_are_not_offered_and_forcing_a_tool_call_is_refused(api, templated):
    # With tool_choice auto the model may answer in text: a template worker always does.
    body = chat(api, model="tpl", tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "Weather?"}]).json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "templated answer"}
    assert body["choices"][0]["finish_reason"] == "stop"

    response = chat(
        api,
        model="tpl",
        tools=[WEATHER_TOOL],
        tool_choice="required",
        messages=[{"role": "user", "content": "Weather?"}],
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "tool_choice")
    assert "preset" in error["message"]
    assert len(templated.hits("/gen")) == 1


def test_a_usage_extract_that_does_not_match_reports_no_usage_and_the_answer_still_comes(api, upstream):
    url = upstream.on("/gen", json={"data": {"text": "ok"}})
    api.post(
        "/api/server/register",
        seed_registration(url, model_name="tpl", response_extract="data.text", usage_extract="meta.tokens"),
        format="json",
    )

    body = chat(api, model="tpl", messages=[{"role": "user", "content": "Hi"}]).json()

    assert body["choices"][0]["message"]["content"] == "ok" and "usage" not in body


@pytest.mark.parametrize(
    "status, error_type",
    [
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (429, "rate_limit_error"),
        (400, "invalid_request_error"),
        (502, "api_error"),
    ],
)
def test_v1_errors_carry_openais_type_for_their_status(status, error_type):
    from inference.openai_api import error_body

    assert error_body(message="m", code="c", status=status)["error"]["type"] == error_type
