"""Property-based fuzzing of /v1/messages and /v1/responses: whatever arrives, the answer is a
translated 200 or a 4xx in the API's own error shape, never a 500."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.models import Worker
from tests.conftest import SEED_ANSWER, seed_registration
from tests.test_fuzz import FUZZ, json_values

pytestmark = pytest.mark.django_db

blocks = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image", "tool_use", "tool_result", "thinking", "document"]) | json_values},
    optional={
        "text": json_values,
        "source": json_values
        | st.fixed_dictionaries(
            {"type": st.sampled_from(["base64", "url"])},
            optional={"media_type": json_values, "data": json_values, "url": json_values},
        ),
        "id": json_values,
        "name": json_values,
        "input": json_values,
        "tool_use_id": json_values,
        "content": json_values,
    },
)
anthropic_messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant"]) | json_values},
        optional={"content": st.text(max_size=10) | st.lists(blocks, max_size=3) | json_values},
    ),
    max_size=3,
)
MESSAGES_FIELDS = {
    "model": st.just("proxyllm") | json_values,
    "max_tokens": st.integers(-1, 10) | json_values,
    "messages": anthropic_messages | json_values,
    "system": json_values,
    "tools": json_values,
    "tool_choice": json_values,
    "stop_sequences": json_values,
    "temperature": json_values,
    "metadata": json_values,
}
items = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning"]) | json_values,
        "role": st.sampled_from(["user", "assistant", "developer"]) | json_values,
        "content": st.text(max_size=10) | json_values,
        "call_id": json_values,
        "name": json_values,
        "arguments": json_values,
        "output": json_values,
    },
)
RESPONSES_FIELDS = {
    "model": st.just("proxyllm") | json_values,
    "input": st.text(max_size=10) | st.lists(items, max_size=3) | json_values,
    "instructions": json_values,
    "tools": json_values,
    "tool_choice": json_values,
    "max_output_tokens": json_values,
    "store": json_values,
    "previous_response_id": json_values,
    "text": json_values,
    "temperature": json_values,
}


@pytest.fixture
def seed_worker(api, upstream):
    def ensure():
        if not Worker.objects.exists():
            api.post("/api/server/register", seed_registration(upstream.on("/gen", json=SEED_ANSWER)), format="json")

    return ensure


@FUZZ
@given(payload=st.fixed_dictionaries({}, optional=MESSAGES_FIELDS) | json_values)
def test_messages_never_answer_500(api, seed_worker, payload):
    seed_worker()

    response = api.post("/v1/messages", payload, format="json")

    assert response.status_code in (200, 400, 404), response.content
    if response.status_code != 200:
        assert response.json()["type"] == "error" and response.json()["error"]["message"]


@FUZZ
@given(payload=st.fixed_dictionaries({}, optional=RESPONSES_FIELDS) | json_values)
def test_responses_never_answer_500(api, seed_worker, payload):
    seed_worker()

    response = api.post("/v1/responses", payload, format="json")

    assert response.status_code in (200, 400, 404), response.content
    if response.status_code != 200:
        assert response.json()["error"]["message"]
