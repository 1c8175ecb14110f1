"""The official openai SDK, through the gateway as it is served (gunicorn, gevent), on anthropic,
ollama and tgi workers: a tool round trip whole and streamed, and usage in the stream."""

import json

import pytest

from tests.chat_helpers import WEATHER_TOOL
from tests.fake_anthropic import AnthropicServer
from tests.fake_ollama import OllamaServer
from tests.fake_tgi import TGIServer
from tests.test_openai_sdk import client, gateway, unique  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def register(gateway, preset: str, base_url: str, **fields) -> str:
    model = unique(preset)
    gateway.post(
        "/api/server/register", {"model_name": model, "preset": preset, "base_url": base_url, **fields}
    ).raise_for_status()
    return model


@pytest.fixture(params=["anthropic", "ollama", "tgi"])
def tool_model(request, gateway, upstream):
    """A model whose worker of the kind answers with a get_weather call for Paris."""
    if request.param == "anthropic":
        server = AnthropicServer(
            blocks=[{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
            stop_reason="tool_use",
        )
        model = register(gateway, "anthropic", server.install(upstream), api_key=server.api_key)
    elif request.param == "ollama":
        server = OllamaServer(
            content="", tool_calls=[{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
        )
        model = register(gateway, "ollama", server.install(upstream), upstream_model="llama3.2")
    else:
        server = TGIServer(tool_call={"name": "get_weather", "arguments": {"city": "Paris"}})
        model = register(gateway, "tgi", server.install(upstream))
    return model, server


def test_a_tool_call_comes_back_to_the_sdk_whole_and_the_result_goes_on(client, tool_model):
    model, server = tool_model

    completion = client.chat.completions.create(model=model, messages=ASK, tools=[WEATHER_TOOL])

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert completion.usage.total_tokens > 0

    follow_up = client.chat.completions.create(
        model=model,
        tools=[WEATHER_TOOL],
        messages=[
            *ASK,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
        ],
    )
    assert follow_up.choices  # the fake accepted the round trip as its real API would
    assert "sunny, 21 C" in json.dumps(server.bodies[-1])


def test_a_streamed_tool_call_is_put_together_by_the_sdk(client, tool_model):
    model, _server = tool_model

    with client.chat.completions.stream(
        model=model, messages=ASK, tools=[WEATHER_TOOL], stream_options={"include_usage": True}
    ) as stream:
        for _event in stream:
            pass
        final = stream.get_final_completion()

    [call] = final.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.total_tokens > 0


def test_an_anthropic_429_reaches_the_sdk_as_a_rate_limit_error(client, gateway, upstream):
    import openai

    server = AnthropicServer(status=429, retry_after="3")
    model = register(gateway, "anthropic", server.install(upstream), api_key=server.api_key)

    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model=model, messages=ASK)

    assert raised.value.response.headers["retry-after"] == "3"
