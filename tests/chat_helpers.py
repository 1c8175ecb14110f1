"""What the native-kind tests share: a chat with tools, and reading a /v1 stream back."""

import json

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}

# A tiny PNG, as a data URL and as the base64 inside it.
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
PNG_DATA_URL = f"data:image/png;base64,{PNG_BASE64}"


def register_kind(api, *, model_name: str, preset: str, base_url: str, **fields) -> dict:
    response = api.post(
        "/api/server/register",
        {"model_name": model_name, "preset": preset, "base_url": base_url, **fields},
        format="json",
    )
    assert response.status_code == 200, response.content
    return response.json()["worker"]


def chat(api, **body):
    return api.post("/v1/chat/completions", body, format="json")


def stream_events(response) -> list:
    """The data of every event of a /v1 stream: dicts, and the string "[DONE]"."""
    assert response.status_code == 200, getattr(response, "content", b"")
    raw = b"".join(response.streaming_content).decode()
    events = []
    for block in raw.split("\n\n"):
        data = "".join(line[5:].strip() for line in block.split("\n") if line.startswith("data:"))
        if data:
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def streamed_text_by_choice(events: list) -> dict[int, str]:
    """Each choice's streamed text, by its index (for ``n`` > 1)."""
    contents: dict[int, str] = {}
    for event in events:
        for choice in event.get("choices", []) if isinstance(event, dict) else []:
            contents[choice["index"]] = contents.get(choice["index"], "") + (choice["delta"].get("content") or "")
    return contents


def streamed_text(events: list) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for event in events
        if isinstance(event, dict)
        for choice in event.get("choices", [])
    )


def streamed_tool_calls(events: list) -> list[dict]:
    """Tool-call deltas put together the way the OpenAI SDK does: by index, arguments appended."""
    calls: dict[int, dict] = {}
    for event in events:
        if not isinstance(event, dict):
            continue
        for choice in event.get("choices", []):
            for delta in choice["delta"].get("tool_calls") or []:
                call = calls.setdefault(delta["index"], {"id": None, "name": None, "arguments": ""})
                call["id"] = delta.get("id") or call["id"]
                function = delta.get("function") or {}
                call["name"] = function.get("name") or call["name"]
                call["arguments"] += function.get("arguments") or ""
    return [calls[index] for index in sorted(calls)]


def finish_reasons(events: list) -> list[str]:
    return [
        choice["finish_reason"]
        for event in events
        if isinstance(event, dict)
        for choice in event.get("choices", [])
        if choice.get("finish_reason")
    ]
