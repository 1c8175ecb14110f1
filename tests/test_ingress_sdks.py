"""The Anthropic SDK, the OpenAI SDK's Responses API and the OpenAI Agents SDK against the
gateway as it is served (gunicorn, gevent workers), each on an openai worker (a fake OpenAI
server that calls tools, whole and streamed) and on a template worker."""

import asyncio
import http.client
import json
import socket
import time
import uuid

import anthropic
import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

from tests.conftest import SEED_ANSWER, seed_registration
from tests.fake_model_apis import OpenAIServer
from tests.fake_tool_calling import COMPLETION_TOKENS, PROMPT_TOKENS, ToolCallingServer

# The served gateway of the OpenAI SDK's tests (keys on, an inference key): one for this module too.
from tests.test_openai_sdk import gateway  # noqa: F401

pytestmark = pytest.mark.e2e

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER_FUNCTION = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": WEATHER_TOOL["input_schema"],
}


@pytest.fixture(scope="module")
def other_key(gateway) -> str:
    """A second inference key, made while the gateway runs (it looks keys up as they come)."""
    return gateway.create_api_key(scope="inference")


@pytest.fixture
def claude(gateway):
    # Anthropic's SDK sends its api_key as x-api-key, and an anthropic-version header.
    return anthropic.Anthropic(base_url=gateway.url, api_key=gateway.inference_key, max_retries=0, timeout=30)


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.inference_key, max_retries=0, timeout=30)


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def openai_worker(gateway, upstream, server: ToolCallingServer) -> str:
    model = unique("gpt")
    registration = {
        "model_name": model,
        "preset": "openai",
        "base_url": server.install(upstream),
        "api_key": "sk-upstream-key",
        "upstream_model": server.model,
    }
    gateway.post("/api/server/register", registration).raise_for_status()
    return model


def template_worker(gateway, upstream) -> str:
    model = unique("seed")
    gateway.post(
        "/api/server/register", seed_registration(upstream.on("/gen", json=SEED_ANSWER), model_name=model)
    ).raise_for_status()
    return model


# --- Anthropic SDK: /v1/messages ---------------------------------------------------------------


def test_the_anthropic_sdk_makes_a_tool_round_trip_through_an_openai_worker(gateway, claude, upstream):
    server = ToolCallingServer()
    model = openai_worker(gateway, upstream, server)
    question = {"role": "user", "content": "What is the weather in Paris?"}

    first = claude.messages.create(
        model=model,
        max_tokens=100,
        system="Be brief.",
        messages=[question],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "auto"},
    )

    assert first.stop_reason == "tool_use" and first.role == "assistant" and first.id.startswith("msg_")
    [call] = first.content
    assert (call.type, call.name, call.input) == ("tool_use", "get_weather", {"city": "Paris", "unit": "celsius"})
    assert (first.usage.input_tokens, first.usage.output_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    sent = server.bodies[-1]
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, question]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": WEATHER_TOOL["input_schema"],
            },
        }
    ]
    assert sent["tool_choice"] == "auto" and sent["max_tokens"] == 100 and sent["model"] == "up-model"

    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C, sunny"}]}
    second = claude.messages.create(
        model=model,
        max_tokens=100,
        tools=[WEATHER_TOOL],
        messages=[question, {"role": "assistant", "content": first.content}, result],
    )

    assert second.stop_reason == "end_turn"
    assert [block.text for block in second.content] == ["The tool said: 18 C, sunny"]
    assert server.bodies[-1]["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "18 C, sunny"},
    ]


def test_the_anthropic_sdk_streams_a_tool_round_trip_through_an_openai_worker(gateway, claude, upstream):
    server = ToolCallingServer()
    model = openai_worker(gateway, upstream, server)
    question = {"role": "user", "content": "What is the weather in Paris?"}

    with claude.messages.stream(model=model, max_tokens=100, messages=[question], tools=[WEATHER_TOOL]) as stream:
        kinds = [event.type for event in stream]
        first = stream.get_final_message()

    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "input_json" in kinds  # the SDK's own event for each input_json_delta it parsed
    [call] = first.content
    assert (call.name, call.input, first.stop_reason) == (
        "get_weather",
        {"city": "Paris", "unit": "celsius"},
        "tool_use",
    )
    assert first.usage.output_tokens == COMPLETION_TOKENS and first.usage.input_tokens == PROMPT_TOKENS
    assert server.bodies[-1]["stream"] is True and server.bodies[-1]["stream_options"] == {"include_usage": True}

    result = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "rainy"}]}],
    }
    with claude.messages.stream(
        model=model,
        max_tokens=100,
        tools=[WEATHER_TOOL],
        messages=[question, {"role": "assistant", "content": first.content}, result],
    ) as stream:
        text = "".join(stream.text_stream)
        second = stream.get_final_message()

    assert text == "The tool said: rainy" and second.stop_reason == "end_turn"


def test_the_anthropic_sdk_gets_text_from_a_template_worker_whole_and_streamed(gateway, claude, upstream):
    model = template_worker(gateway, upstream)
    messages = [{"role": "user", "content": [{"type": "text", "text": "who are you?"}]}]

    whole = claude.messages.create(
        model=model, max_tokens=20, system=[{"type": "text", "text": "Be brief."}], messages=messages
    )
    with claude.messages.stream(model=model, max_tokens=20, messages=messages) as stream:
        streamed = "".join(stream.text_stream)

    assert [block.text for block in whole.content] == ["I am a fake model."] and whole.stop_reason == "end_turn"
    assert whole.model == model
    assert streamed == "I am a fake model."
    assert upstream.hits("/gen")[-1].json == {"input": "who are you?", "model_name": model}


def test_the_anthropic_sdk_raises_its_own_errors_for_an_unknown_model_bad_input_and_a_bad_key(gateway, claude):
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model=unique("missing"), max_tokens=10, messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(model="any", max_tokens=10, messages=[{"role": "robot", "content": "Hi"}])
    stranger = anthropic.Anthropic(base_url=gateway.url, api_key="not-a-key", max_retries=0, timeout=30)
    with pytest.raises(anthropic.AuthenticationError) as refused:
        stranger.messages.create(model="any", max_tokens=10, messages=[{"role": "user", "content": "Hi"}])

    assert missing.value.body["error"]["type"] == "not_found_error"
    assert bad.value.body["error"] == {
        "type": "invalid_request_error",
        "message": "messages[0].role: must be one of 'user', 'assistant', not 'robot'",
    }
    assert refused.value.body["error"]["type"] == "authentication_error"


# --- OpenAI SDK: /v1/responses and /v1/models/{id} ----------------------------------------------


def test_the_openai_sdk_makes_a_responses_tool_round_trip_through_an_openai_worker(gateway, client, upstream):
    server = ToolCallingServer()
    model = openai_worker(gateway, upstream, server)

    first = client.responses.create(
        model=model,
        input="What is the weather in Paris?",
        instructions="Be brief.",
        tools=[WEATHER_FUNCTION],
        max_output_tokens=64,
    )

    assert first.object == "response" and first.status == "completed" and first.id.startswith("resp_")
    [call] = first.output
    assert (call.type, call.name, call.arguments) == (
        "function_call",
        "get_weather",
        '{"city": "Paris", "unit": "celsius"}',
    )
    assert (first.usage.input_tokens, first.usage.output_tokens, first.usage.total_tokens) == (
        PROMPT_TOKENS,
        COMPLETION_TOKENS,
        PROMPT_TOKENS + COMPLETION_TOKENS,
    )
    assert server.bodies[-1]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the weather in Paris?"},
    ]
    assert server.bodies[-1]["max_tokens"] == 64

    # The next turn names the stored response instead of repeating the conversation.
    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        tools=[WEATHER_FUNCTION],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 C"}],
    )

    assert second.output_text == "The tool said: 18 C"
    assert server.bodies[-1]["messages"] == [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.call_id, "content": "18 C"},
    ]
    assert client.responses.retrieve(second.id).output_text == "The tool said: 18 C"


def test_the_openai_sdk_streams_a_responses_tool_round_trip_through_an_openai_worker(gateway, client, upstream):
    server = ToolCallingServer()
    model = openai_worker(gateway, upstream, server)
    question = {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]}

    events = list(
        client.responses.create(model=model, input=[question], tools=[WEATHER_FUNCTION], stream=True, store=False)
    )

    kinds = [event.type for event in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert set(kinds[3:-3]) == {"response.function_call_arguments.delta"}
    assert kinds[-3:] == ["response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    call = events[-1].response.output[0]
    assert "".join(event.delta for event in events[3:-3]) == call.arguments == '{"city": "Paris", "unit": "celsius"}'
    assert events[-1].response.usage.total_tokens == PROMPT_TOKENS + COMPLETION_TOKENS

    # store: false keeps nothing, so the next turn carries the whole conversation itself. The
    # SDK's stream helper checks the events' order as it accumulates them.
    turn = [
        question,
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "rainy"},
    ]
    with client.responses.stream(model=model, input=turn, tools=[WEATHER_FUNCTION]) as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()

    assert "".join(deltas) == final.output_text == "The tool said: rainy"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(events[-1].response.id)


def test_the_openai_sdk_gets_responses_from_a_template_worker_whole_and_streamed(gateway, client, upstream):
    model = template_worker(gateway, upstream)

    whole = client.responses.create(model=model, input="who are you?")
    with client.responses.stream(model=model, input="who are you?") as stream:
        streamed = stream.get_final_response()

    assert whole.output_text == streamed.output_text == "I am a fake model."
    assert client.responses.retrieve(streamed.id).output_text == "I am a fake model."  # stored as it streamed
    assert whole.usage is None  # a template worker that does not say its token counts
    assert upstream.hits("/gen")[-1].json == {"input": "who are you?", "model_name": model}


def test_a_stored_response_is_visible_to_its_key_only(gateway, client, upstream, other_key):
    model = template_worker(gateway, upstream)
    mine = client.responses.create(model=model, input="who are you?")
    other = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=other_key, max_retries=0, timeout=30)

    assert client.responses.retrieve(mine.id).id == mine.id
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError) as raised:
        other.responses.create(model=model, input="and then?", previous_response_id=mine.id)
    assert raised.value.code == "response_not_found"


def test_the_openai_sdk_retrieves_a_model_and_gets_not_found_for_an_unknown_one(gateway, client, upstream):
    model = template_worker(gateway, upstream)

    found = client.models.retrieve(model)

    assert (found.id, found.object) == (model, "model")
    with pytest.raises(openai.NotFoundError) as raised:
        client.models.retrieve(unique("missing"))
    assert raised.value.code == "model_not_found"


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/messages", {"max_tokens": 500, "messages": [{"role": "user", "content": "Hi"}]}),
        ("/v1/responses", {"input": "Hi", "store": False}),
    ],
)
def test_a_client_that_leaves_a_translated_stream_makes_the_gateway_close_the_upstream(gateway, upstream, path, body):
    server = OpenAIServer(words=tuple(f" w{i}" for i in range(400)), pause=0.02)
    model = unique("long")
    gateway.post(
        "/api/server/register",
        {"model_name": model, "preset": "openai", "base_url": server.install(upstream), "upstream_model": "up-model"},
    ).raise_for_status()
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    headers = {"Content-Type": "application/json", "x-api-key": gateway.inference_key}
    connection.request("POST", path, body=json.dumps({"model": model, "stream": True, **body}), headers=headers)
    response = connection.getresponse()
    assert response.status == 200
    assert response.read(7) == b"event: "  # the stream has begun
    connection.sock.shutdown(socket.SHUT_RDWR)
    connection.close()

    seen = upstream.hits("/v1/chat/completions")[-1]
    assert seen.answered.wait(10), "the upstream kept streaming to a client that had gone"
    assert seen.aborted
    assert logged_line(gateway, f"model={model} ", "error_code=client_gone"), (
        "the attempt was not settled as client_gone"
    )


def logged_line(gateway, *parts: str, seconds: float = 10.0) -> bool:
    """Whether one line of the gateway's log soon has every one of ``parts``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(all(part in line for part in parts) for line in gateway.log_path.read_text().splitlines()):
            return True
        time.sleep(0.05)
    return False


# --- OpenAI Agents SDK --------------------------------------------------------------------------


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def run_agent(gateway, model: str, *, streamed: bool = False) -> str:
    set_tracing_disabled(True)  # never sends traces to the internet
    gateway_client = openai.AsyncOpenAI(
        base_url=f"{gateway.url}/v1", api_key=gateway.inference_key, max_retries=0, timeout=30
    )
    agent = Agent(
        name="weather",
        instructions="Answer with the weather.",
        tools=[get_weather],
        model=OpenAIResponsesModel(model=model, openai_client=gateway_client),
    )
    question = "What is the weather in Paris?"
    if not streamed:
        return Runner.run_sync(agent, question).final_output

    async def run() -> str:
        result = Runner.run_streamed(agent, question)
        async for _event in result.stream_events():
            pass
        return result.final_output

    return asyncio.run(run())


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_an_agent_turn_calls_its_function_tool_through_an_openai_worker(gateway, upstream, streamed):
    server = ToolCallingServer(arguments={"city": "Paris"})
    model = openai_worker(gateway, upstream, server)

    assert run_agent(gateway, model, streamed=streamed) == "The tool said: sunny in Paris"
    assert [message["role"] for message in server.bodies[-1]["messages"]] == ["system", "user", "assistant", "tool"]
    assert all(body.get("stream", False) is streamed for body in server.bodies)


def test_an_agent_turn_gets_its_answer_from_a_template_worker(gateway, upstream):
    model = template_worker(gateway, upstream)

    assert run_agent(gateway, model) == "I am a fake model."
