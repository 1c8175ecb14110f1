"""ollama workers: an OpenAI chat translated to Ollama's /api/chat and back, against a fake of
that API (tests/fake_ollama.py)."""

import json

import pytest

from tests.chat_helpers import (
    PNG_BASE64,
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
from tests.fake_ollama import OllamaServer

pytestmark = pytest.mark.django_db

CALL = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}


@pytest.fixture
def llama(api, upstream):
    server = OllamaServer()
    register_kind(
        api, model_name="llama", preset="ollama", base_url=server.install(upstream), upstream_model="llama3.2"
    )
    return server


def test_a_chat_becomes_an_api_chat_request_with_sampling_in_options(api, llama):
    response = chat(
        api,
        model="llama",
        temperature=0.2,
        top_p=0.8,
        max_tokens=40,
        stop=["END"],
        seed=7,
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        ],
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello from Ollama."},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert body["usage"] == {"prompt_tokens": 26, "completion_tokens": 9, "total_tokens": 35}
    assert llama.bodies[-1] == {
        "model": "llama3.2",
        "stream": False,
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}],
        "options": {"temperature": 0.2, "top_p": 0.8, "seed": 7, "num_predict": 40, "stop": ["END"]},
    }


def test_tools_go_as_given_and_tool_calls_come_back_with_ids_and_json_arguments(api, llama):
    llama.content, llama.tool_calls = "", [CALL]

    response = chat(api, model="llama", tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "Weather?"}])

    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert llama.bodies[-1]["tools"] == [WEATHER_TOOL]


def test_a_tool_round_trip_sends_arguments_as_an_object_and_the_result_with_its_tool_name(api, llama):
    response = chat(
        api,
        model="llama",
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
    )

    assert response.status_code == 200, response.content
    assert llama.bodies[-1]["messages"][1:] == [
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]


def test_tool_choice_none_sends_no_tools_and_forcing_a_tool_is_refused(api, llama):
    chat(api, model="llama", tools=[WEATHER_TOOL], tool_choice="none", messages=[{"role": "user", "content": "Hi"}])
    assert "tools" not in llama.bodies[-1]

    response = chat(
        api, model="llama", tools=[WEATHER_TOOL], tool_choice="required", messages=[{"role": "user", "content": "Hi"}]
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "tool_choice"


def test_a_data_url_image_becomes_base64_in_images_and_a_link_is_a_400(api, llama):
    chat(
        api,
        model="llama",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
                ],
            }
        ],
    )
    assert llama.bodies[-1]["messages"] == [{"role": "user", "content": "What is this?", "images": [PNG_BASE64]}]

    response = chat(
        api,
        model="llama",
        messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}
        ],
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "messages")
    assert "messages[0].content[0]" in error["message"] and "data URL" in error["message"]
    assert len(llama.bodies) == 1


def test_json_mode_becomes_format(api, llama):
    chat(api, model="llama", response_format={"type": "json_object"}, messages=[{"role": "user", "content": "Hi"}])
    assert llama.bodies[-1]["format"] == "json"

    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    chat(
        api,
        model="llama",
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        messages=[{"role": "user", "content": "Hi"}],
    )
    assert llama.bodies[-1]["format"] == schema


def test_done_reason_length_is_finish_reason_length(api, llama):
    llama.done_reason = "length"

    assert (
        chat(api, model="llama", messages=[{"role": "user", "content": "Hi"}]).json()["choices"][0]["finish_reason"]
        == "length"
    )


def test_n_is_that_many_calls(api, llama):
    body = chat(api, model="llama", n=2, messages=[{"role": "user", "content": "Hi"}]).json()

    assert [choice["index"] for choice in body["choices"]] == [0, 1]
    assert body["usage"]["total_tokens"] == 70 and len(llama.bodies) == 2


def test_a_stream_of_ndjson_is_relayed_as_chunks_with_tool_calls_and_usage(api, llama):
    llama.content, llama.tool_calls = "Let me check.", [CALL]

    events = stream_events(
        chat(
            api,
            model="llama",
            stream=True,
            stream_options={"include_usage": True},
            tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": "Weather?"}],
        )
    )

    assert llama.bodies[-1]["stream"] is True
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert streamed_text(events) == "Let me check."
    [call] = streamed_tool_calls(events)
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}
    assert finish_reasons(events) == ["tool_calls"]
    assert events[-2]["usage"] == {"prompt_tokens": 26, "completion_tokens": 9, "total_tokens": 35}
    assert events[-1] == "[DONE]"


def test_a_stream_cut_mid_way_ends_with_an_error_event_and_no_done(api, llama):
    llama.content, llama.cut_after = "one two three four", 2

    events = stream_events(chat(api, model="llama", stream=True, messages=[{"role": "user", "content": "Hi"}]))

    assert streamed_text(events) == "one two "
    assert events[-1]["error"]["code"] == "stream_interrupted"
    assert "[DONE]" not in events


def test_a_stream_that_ends_cleanly_before_its_done_line_is_cut_off(api, llama, upstream):
    upstream.on(
        "/api/chat",
        stream=iter([b'{"model":"llama3.2","message":{"role":"assistant","content":"Hi"},"done":false}\n']),
        headers={"Content-Type": "application/x-ndjson"},
    )

    events = stream_events(chat(api, model="llama", stream=True, messages=[{"role": "user", "content": "Hi"}]))

    assert streamed_text(events) == "Hi"
    assert '"done": true' in events[-1]["error"]["message"]


def test_an_error_line_in_the_stream_reaches_the_client_as_an_error_event(api, llama):
    llama.error_mid_stream = True

    events = stream_events(chat(api, model="llama", stream=True, messages=[{"role": "user", "content": "Hi"}]))

    assert "an error was encountered while running the model" in events[-1]["error"]["message"]
    assert "[DONE]" not in events


def test_an_unknown_upstream_model_is_ollamas_404_with_its_message(api, llama):
    llama.models = ("other",)

    response = chat(api, model="llama", messages=[{"role": "user", "content": "Hi"}])

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "not_found_error" and 'model "llama3.2" not found' in error["message"]


def test_a_503_from_every_worker_is_a_502_and_not_a_429(api, llama):
    llama.status = 503

    response = chat(api, model="llama", messages=[{"role": "user", "content": "Hi"}])

    assert response.status_code == 502
    assert response.json()["error"]["type"] == "api_error"


def test_the_seed_endpoint_reaches_an_ollama_worker(api, llama):
    response = api.post(
        "/api/v1/chat/completions", {"model_name": "llama", "input": "hello", "temperature": 0.3}, format="json"
    )

    assert response.json() == {"success": True, "msg": "execute succeed", "result": "Hello from Ollama."}
    assert llama.bodies[-1] == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "hello"}],
        "stream": False,
        "options": {"temperature": 0.3},
    }


def test_n_streamed_is_that_many_ndjson_streams_in_a_row(api, llama):
    events = stream_events(
        chat(
            api,
            model="llama",
            n=2,
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Hi"}],
        )
    )

    assert streamed_text_by_choice(events[:-2]) == {0: "Hello from Ollama.", 1: "Hello from Ollama."}
    assert events[-2]["usage"]["total_tokens"] == 70 and events[-1] == "[DONE]"
