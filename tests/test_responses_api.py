"""POST /v1/responses and GET /v1/responses/{id} in process: what reaches the worker, the
Response object and its stream, stored responses (owner, retention, prune) and bad input."""

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from response_store.models import StoredResponse
from tests.conftest import SEED_ANSWER, bearer, seed_registration
from tests.fake_model_apis import OpenAIServer
from tests.fake_tool_calling import ToolCallingServer

pytestmark = pytest.mark.django_db

FUNCTION = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}


def register_openai(api, base_url: str, model_name: str = "gpt") -> str:
    response = api.post(
        "/api/server/register",
        {"model_name": model_name, "kind": "openai", "req_url_template": base_url, "upstream_model": "up-model"},
        format="json",
    )
    assert response.status_code == 200, response.content
    return model_name


def create(api, headers: dict | None = None, **body):
    return api.post("/v1/responses", {"model": "gpt", "input": "Hi", **body}, format="json", **(headers or {}))


def events(response) -> list[dict]:
    assert response.status_code == 200, response.content
    parsed = []
    for raw in b"".join(response.streaming_content).decode().split("\n\n"):
        if raw.strip():
            name_line, data_line = raw.split("\n")
            data = json.loads(data_line.removeprefix("data: "))
            assert data["type"] == name_line.removeprefix("event: ")
            parsed.append(data)
    return parsed


@pytest.mark.parametrize(
    "body, param, what",
    [
        ({"model": None}, "model", "is required"),
        ({"input": None}, "input", "is required"),
        ({"input": 5}, "input", "must be a list, not a number"),
        ({"input": []}, "input", "must not be empty"),
        (
            {"input": [{"type": "item_reference", "id": "x"}]},
            "input[0].type",
            "input items of type 'item_reference' are not supported here; this gateway translates message, function_call "
            "and function_call_output",
        ),
        (
            {"input": [{"role": "robot", "content": "x"}]},
            "input[0].role",
            "must be one of 'user', 'assistant', 'system', 'developer', not 'robot'",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0].type",
            "must be one of 'input_text', not 'input_file'",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].image_url",
            "must be an image URL or a data: URL (file_id is not supported)",
        ),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id", "is required"),
        (
            {"tools": [{"type": "web_search"}]},
            "tools[0].type",
            "tools of type 'web_search' are not supported; give function tools (type function, name, parameters)",
        ),
        (
            {"tools": [FUNCTION], "tool_choice": "sometimes"},
            "tool_choice",
            "must be one of 'auto', 'none', 'required', not 'sometimes'",
        ),
        ({"max_output_tokens": 0}, "max_output_tokens", "must be at least 1"),
        ({"tools": ""}, "tools", "must be a list, not a string"),
        ({"store": "yes"}, "store", "must be true or false, not a string"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema", "is required"),
        ({"previous_response_id": 7}, "previous_response_id", "must be a string, not a number"),
    ],
)
def test_a_bad_request_gets_a_400_in_the_openai_shape_saying_what_and_where(api, body, param, what):
    response = create(api, **body)

    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": f"{param}: {what}",
        "type": "invalid_request_error",
        "param": param,
        "code": "invalid",
    }


def test_items_instructions_and_options_reach_an_openai_worker_translated(api, upstream):
    server = ToolCallingServer()
    register_openai(api, server.install(upstream))
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    items = [
        {"role": "developer", "content": "Rules."},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "See"},
                {"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "low"},
            ],
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Calling.", "annotations": []}],
        },
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "lookup", "arguments": '{"b": 1}'},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
    ]

    response = create(
        api,
        input=items,
        instructions="Be brief.",
        tools=[{**FUNCTION, "strict": True}],
        tool_choice={"type": "function", "name": "lookup"},
        parallel_tool_calls=False,
        temperature=0.5,
        top_p=0.8,
        max_output_tokens=99,
        user="u-1",
        text={"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}},
    )

    assert response.status_code == 200, response.content
    assert server.bodies[-1] == {
        "model": "up-model",
        "temperature": 0.5,
        "top_p": 0.8,
        "max_tokens": 99,
        "user": "u-1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Rules."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "See"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Calling.",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
                    {"id": "c2", "type": "function", "function": {"name": "lookup", "arguments": '{"b": 1}'}},
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "one"},
            {"role": "tool", "tool_call_id": "c2", "content": "two"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "lookup", "parameters": FUNCTION["parameters"], "strict": True}}
        ],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True}},
    }
    answer = response.json()
    assert (
        answer["output"][0]["type"] == "message" and answer["output"][0]["content"][0]["text"] == "The tool said: two"
    )
    assert answer["instructions"] == "Be brief." and answer["parallel_tool_calls"] is False
    assert answer["tools"] == [
        {
            "type": "function",
            "strict": True,
            "description": None,
            "name": "lookup",
            "parameters": FUNCTION["parameters"],
        }
    ]


def test_an_answer_cut_at_max_tokens_is_an_incomplete_response(api, upstream):
    register_openai(
        api,
        upstream.on(
            "/v1/chat/completions",
            json={
                "id": "c",
                "object": "chat.completion",
                "created": 1,
                "model": "up-model",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "Trunc"}, "finish_reason": "length"}
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            },
        ).rsplit("/chat", 1)[0],
    )

    answer = create(api, max_output_tokens=1).json()

    assert answer["status"] == "incomplete" and answer["incomplete_details"] == {"reason": "max_output_tokens"}
    assert answer["usage"]["total_tokens"] == 4
    stream = events(create(api, max_output_tokens=1, stream=True))
    assert stream[-1]["type"] == "response.incomplete"  # a server that ignored stream: told as a stream


def test_a_streamed_text_answer_follows_the_responses_event_sequence(api, upstream):
    register_openai(api, OpenAIServer().install(upstream))

    stream = events(create(api, stream=True))

    assert [event["type"] for event in stream] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 6,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event["sequence_number"] for event in stream] == list(range(len(stream)))
    item_id = stream[2]["item"]["id"]
    assert all(event["item_id"] == item_id for event in stream[3:-2]) and stream[-2]["item"]["id"] == item_id
    assert stream[-4]["text"] == "Hello from the fake server."
    assert stream[-1]["response"]["output"][0]["status"] == "completed"
    assert stream[0]["response"]["status"] == "in_progress" and stream[-1]["response"]["status"] == "completed"


def test_a_stream_cut_by_the_upstream_ends_with_response_failed_and_is_not_stored(api, upstream):
    register_openai(api, OpenAIServer(cut_after=3).install(upstream))

    stream = events(create(api, stream=True))

    assert stream[-1]["type"] == "response.failed"
    assert stream[-1]["response"]["status"] == "failed" and "cut off" in stream[-1]["response"]["error"]["message"]
    assert not StoredResponse.objects.exists()


def test_an_upstream_refusal_reaches_the_client_in_the_openai_shape_with_its_status(api, upstream):
    error = {"message": "bad temperature", "type": "invalid_request_error", "param": "temperature", "code": None}
    register_openai(api, upstream.on("/v1/chat/completions", status=400, json={"error": error}).rsplit("/chat", 1)[0])

    for response in (create(api), create(api, stream=True)):
        assert response.status_code == 400
        assert response.json() == {"error": error}


def test_a_template_worker_answers_and_a_stored_response_continues_the_conversation(api, upstream):
    api.post(
        "/api/server/register",
        seed_registration(upstream.on("/gen", json=SEED_ANSWER), model_name="gpt"),
        format="json",
    )
    first = create(api, instructions="Not carried over.").json()

    second = create(api, input="And you?", previous_response_id=first["id"])

    assert second.status_code == 200, second.content
    assert second.json()["previous_response_id"] == first["id"]
    stored = StoredResponse.objects.get(response_id=second.json()["id"])
    assert stored.conversation == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "I am a fake model."},
        {"role": "user", "content": "And you?"},
        {"role": "assistant", "content": "I am a fake model."},
    ]
    assert api.get(f"/v1/responses/{first['id']}").json() == first


def test_a_response_is_still_answered_when_the_database_refuses_to_store_it(api, upstream):
    api.post(
        "/api/server/register",
        seed_registration(upstream.on("/gen", json=SEED_ANSWER), model_name="gpt"),
        format="json",
    )
    with connection.cursor() as cursor:  # the test's transaction brings the table back
        cursor.execute(f"DROP TABLE {StoredResponse._meta.db_table}")

    whole = create(api)
    stream = events(create(api, stream=True))

    assert whole.status_code == 200 and whole.json()["output"][0]["content"][0]["text"] == "I am a fake model."
    assert stream[-1]["type"] == "response.completed"


def test_the_owner_deletes_a_stored_response_and_nobody_else_may(api, upstream, make_key):
    api.post(
        "/api/server/register",
        seed_registration(upstream.on("/gen", json=SEED_ANSWER), model_name="gpt"),
        format="json",
    )
    mine, theirs = bearer(make_key("inference")), bearer(make_key("inference"))
    made = create(api, mine).json()

    assert api.delete(f"/v1/responses/{made['id']}", **theirs).status_code == 404
    deleted = api.delete(f"/v1/responses/{made['id']}", **mine)

    assert deleted.json() == {"id": made["id"], "object": "response", "deleted": True}
    assert api.get(f"/v1/responses/{made['id']}", **mine).status_code == 404


def test_store_false_keeps_nothing(api, upstream):
    api.post(
        "/api/server/register",
        seed_registration(upstream.on("/gen", json=SEED_ANSWER), model_name="gpt"),
        format="json",
    )

    answer = create(api, store=False).json()

    assert answer["store"] is False and not StoredResponse.objects.exists()
    assert api.get(f"/v1/responses/{answer['id']}").status_code == 404


def test_a_stored_response_belongs_to_the_key_that_made_it(api, upstream, make_key):
    api.post(
        "/api/server/register",
        seed_registration(upstream.on("/gen", json=SEED_ANSWER), model_name="gpt"),
        format="json",
    )
    mine, theirs = bearer(make_key("inference")), bearer(make_key("inference"))
    made = create(api, mine).json()

    assert api.get(f"/v1/responses/{made['id']}", **mine).status_code == 200
    for headers in (theirs, {}):  # another key, and no key at all (keys off)
        refused = api.get(f"/v1/responses/{made['id']}", **headers)
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "response_not_found"
        assert create(api, headers, previous_response_id=made["id"]).status_code == 404


def test_responses_past_the_retention_are_not_found_and_prune_responses_deletes_them(api, upstream, settings, capsys):
    settings.MMM_RESPONSES_RETENTION_DAYS = 7
    api.post(
        "/api/server/register",
        seed_registration(upstream.on("/gen", json=SEED_ANSWER), model_name="gpt"),
        format="json",
    )
    old, recent = create(api).json(), create(api).json()
    StoredResponse.objects.filter(response_id=old["id"]).update(created_at=timezone.now() - timedelta(days=8))

    assert api.get(f"/v1/responses/{old['id']}").status_code == 404
    call_command("prune_responses")

    assert list(StoredResponse.objects.values_list("response_id", flat=True)) == [recent["id"]]
    assert "pruned 1 stored response(s)" in capsys.readouterr().out


def test_the_model_endpoint_answers_for_a_routable_model_and_404s_otherwise(api, upstream, make_key):
    api.post(
        "/api/server/register",
        seed_registration(upstream.on("/gen", json=SEED_ANSWER), model_name="org/gpt"),
        format="json",
    )
    limited = bearer(make_key("inference", allowed_models=["other"]))

    found = api.get("/v1/models/org/gpt")

    assert found.status_code == 200
    assert (
        found.json()["id"] == "org/gpt" and found.json()["object"] == "model" and found.json()["owned_by"] == "xuyuan23"
    )
    for response in (api.get("/v1/models/missing"), api.get("/v1/models/org/gpt", **limited)):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "model_not_found"
