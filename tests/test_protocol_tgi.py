"""tgi workers: text-generation-inference's Messages API, against a fake of it (tests/fake_tgi.py)."""

import json

import pytest

from tests.chat_helpers import (
    PNG_DATA_URL,
    WEATHER_TOOL,
    chat,
    finish_reasons,
    register_kind,
    stream_events,
    streamed_text,
    streamed_text_by_choice,
    streamed_tool_calls,
)
from tests.fake_tgi import TGIServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def tgi(api, upstream):
    server = TGIServer()
    worker = register_kind(api, model_name="zephyr", preset="tgi", base_url=server.install(upstream))
    assert worker["kind"] == "tgi" and worker["req_url_template"] == upstream.url().rstrip("/")
    return server


def test_a_chat_goes_to_the_messages_api_as_it_came_with_image_parts(api, tgi):
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is it?"},
                {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
            ],
        }
    ]
    response = chat(api, model="zephyr", temperature=0.1, max_tokens=9, messages=messages)

    assert response.status_code == 200, response.content
    assert response.json()["choices"][0]["message"]["content"] == "Hello from TGI. (call 1)"
    assert response.json()["usage"]["total_tokens"] == 15
    assert tgi.bodies[-1] == {"model": "zephyr", "temperature": 0.1, "max_tokens": 9, "messages": messages}


def test_n_which_tgi_ignores_is_that_many_calls(api, tgi):
    body = chat(api, model="zephyr", n=3, messages=[{"role": "user", "content": "Hi"}]).json()

    assert [choice["message"]["content"] for choice in body["choices"]] == [
        "Hello from TGI. (call 1)",
        "Hello from TGI. (call 2)",
        "Hello from TGI. (call 3)",
    ]
    assert [choice["index"] for choice in body["choices"]] == [0, 1, 2]
    assert body["usage"] == {"prompt_tokens": 33, "completion_tokens": 12, "total_tokens": 45}
    assert all("n" not in sent for sent in tgi.bodies)


def test_tool_calls_whole_and_streamed(api, tgi):
    tgi.tool_call = {"name": "get_weather", "arguments": {"city": "Oslo"}}

    whole = chat(api, model="zephyr", tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "Weather?"}]).json()
    call = whole["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}

    events = stream_events(
        chat(
            api,
            model="zephyr",
            stream=True,
            stream_options={"include_usage": True},
            tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": "Weather?"}],
        )
    )
    [streamed] = streamed_tool_calls(events)
    assert json.loads(streamed["arguments"]) == {"city": "Oslo"}
    assert finish_reasons(events) == ["tool_calls"]
    assert events[-2]["usage"]["total_tokens"] == 15 and events[-1] == "[DONE]"


def test_a_stream_cut_mid_way_ends_with_an_error_event(api, tgi):
    tgi.cut_after = 2

    events = stream_events(chat(api, model="zephyr", stream=True, messages=[{"role": "user", "content": "Hi"}]))

    assert streamed_text(events) == "Hello from "
    assert events[-1]["error"]["code"] == "stream_interrupted"


def test_a_429_reaches_the_client_as_a_429(api, tgi):
    tgi.status = 429

    response = chat(api, model="zephyr", messages=[{"role": "user", "content": "Hi"}])

    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1


def test_the_seed_endpoint_reaches_a_tgi_worker(api, tgi):
    response = api.post("/api/v1/chat/completions", {"model_name": "zephyr", "input": "hello"}, format="json")

    assert response.json()["result"] == "Hello from TGI. (call 1)"


def test_n_streamed_is_that_many_streams_in_a_row_with_their_choices_renumbered(api, tgi):
    events = stream_events(
        chat(
            api,
            model="zephyr",
            n=2,
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Hi"}],
        )
    )

    assert streamed_text_by_choice(events[:-2]) == {0: "Hello from TGI. (call 1) ", 1: "Hello from TGI. (call 2) "}
    assert events[-2]["choices"] == [] and events[-2]["usage"]["total_tokens"] == 30
    assert events.count("[DONE]") == 1 and events[-1] == "[DONE]"
    assert all("n" not in sent for sent in tgi.bodies)
