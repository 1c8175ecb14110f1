import json

from hypothesis import given
from hypothesis import strategies as st

from inference.templating import (
    MAX_TOKENS,
    MODEL_NAME,
    MODEL_TEMPERATURE,
    USER_PROMPT,
    chat_values,
    mentions,
    render_body,
    render_url,
)

VALUES = {USER_PROMPT: "hello", MODEL_TEMPERATURE: 0.2, MODEL_NAME: "m"}


def test_a_whole_string_placeholder_becomes_the_typed_value():
    body = {"t": "{MODEL_TEMPERATURE}", "p": "{USER_PROMPT}", "m": "{MODEL_NAME}"}
    assert render_body(body, VALUES) == {"t": 0.2, "p": "hello", "m": "m"}


def test_a_placeholder_inside_text_is_replaced_as_text():
    body = {"q": "Q: {USER_PROMPT} (t={MODEL_TEMPERATURE}, m={MODEL_NAME})"}
    assert render_body(body, VALUES) == {"q": "Q: hello (t=0.2, m=m)"}


def test_it_walks_nested_objects_and_lists():
    body = {
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "{USER_PROMPT}"}],
        "deep": [[{"x": ["{MODEL_NAME}"]}]],
    }
    assert render_body(body, VALUES) == {
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
        "deep": [[{"x": ["m"]}]],
    }


def test_a_missing_temperature_drops_its_key_and_list_item_and_empties_text():
    body = {"temperature": "{MODEL_TEMPERATURE}", "list": [1, "{MODEL_TEMPERATURE}"], "s": "t={MODEL_TEMPERATURE}"}
    assert render_body(body, {USER_PROMPT: "p", MODEL_NAME: "m"}) == {"list": [1], "s": "t="}


def test_user_text_is_not_scanned_again():
    values = {**VALUES, USER_PROMPT: "{MODEL_NAME} and {MODEL_TEMPERATURE}"}
    assert render_body({"a": "{USER_PROMPT}", "b": "x {USER_PROMPT}"}, values) == {
        "a": "{MODEL_NAME} and {MODEL_TEMPERATURE}",
        "b": "x {MODEL_NAME} and {MODEL_TEMPERATURE}",
    }


def test_the_template_is_not_modified():
    body = {"a": ["{USER_PROMPT}", {"b": "{MODEL_TEMPERATURE}"}]}
    before = json.dumps(body)
    render_body(body, {USER_PROMPT: "x"})
    assert json.dumps(body) == before


def test_keys_and_non_string_leaves_are_left_alone():
    body = {"{USER_PROMPT}": 1, "n": None, "b": True, "f": 1.5}
    assert render_body(body, VALUES) == body


def test_url_values_are_percent_encoded_as_one_part():
    url = render_url("http://h/{MODEL_NAME}/x?q={USER_PROMPT}", {MODEL_NAME: "a/b c", USER_PROMPT: "1&2=3"})
    assert url == "http://h/a%2Fb%20c/x?q=1%262%3D3"


def test_mentions_finds_placeholders_at_any_depth():
    assert mentions({"a": [{"b": "x {USER_PROMPT}"}]}, USER_PROMPT)
    assert not mentions({"{USER_PROMPT}": "key only"}, USER_PROMPT)


# --- properties ------------------------------------------------------------------------------

TOKENS = ["{USER_PROMPT}", "{MODEL_TEMPERATURE}", "{MODEL_NAME}"]
plain_text = st.text().filter(lambda text: "{" not in text)
# Prompts that mix ordinary text with placeholder tokens and stray braces.
prompts = st.lists(st.one_of(st.text(), st.sampled_from([*TOKENS, "{", "}", "{{USER_PROMPT}}"]))).map("".join)
temperatures = st.one_of(st.none(), st.floats(min_value=0, max_value=2), st.integers(0, 2))


class Text:
    """A template string built from pieces, so the expected rendering is known independently."""

    def __init__(self, pieces: list[str]):
        self.pieces = pieces
        self.template = "".join(pieces)

    def expected(self, values: dict):
        if self.template in TOKENS:
            value = values[self.template[1:-1]]
            return OMITTED if value is None else value
        out = []
        for piece in self.pieces:
            if piece in TOKENS:
                value = values[piece[1:-1]]
                out.append("" if value is None else value if isinstance(value, str) else json.dumps(value))
            else:
                out.append(piece)
        return "".join(out)


OMITTED = object()
texts = st.lists(st.one_of(plain_text, st.sampled_from(TOKENS)), min_size=1, max_size=5).map(Text)
leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), texts)
templates = st.recursive(
    leaves,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(plain_text, children, max_size=4)),
    max_leaves=20,
)


def as_template(node):
    if isinstance(node, Text):
        return node.template
    if isinstance(node, dict):
        return {key: as_template(value) for key, value in node.items()}
    if isinstance(node, list):
        return [as_template(item) for item in node]
    return node


def expected(node, values):
    if isinstance(node, Text):
        return node.expected(values)
    if isinstance(node, dict):
        rendered = {key: expected(value, values) for key, value in node.items()}
        return {key: value for key, value in rendered.items() if value is not OMITTED}
    if isinstance(node, list):
        return [value for value in (expected(item, values) for item in node) if value is not OMITTED]
    return node


@given(
    node=st.one_of(st.lists(templates, max_size=4), st.dictionaries(plain_text, templates, max_size=4)),
    prompt=prompts,
    temperature=temperatures,
)
def test_any_prompt_gives_valid_json_where_only_placeholders_change(node, prompt, temperature):
    values = {USER_PROMPT: prompt, MODEL_TEMPERATURE: temperature, MODEL_NAME: "model-x"}
    template = as_template(node)
    before = json.dumps(template)

    rendered = render_body(template, values)

    assert json.loads(json.dumps(rendered, ensure_ascii=False)) == expected(node, values)
    assert json.dumps(template) == before  # the template is untouched


@given(prefix=plain_text, suffix=plain_text, prompt=prompts)
def test_any_prompt_inside_text_is_inserted_verbatim(prefix, suffix, prompt):
    rendered = render_body([prefix + "{USER_PROMPT}" + suffix], {USER_PROMPT: prompt, MODEL_NAME: "m"})

    assert rendered == [prefix + prompt + suffix]


def test_messages_is_the_whole_chat_as_a_json_value():
    chat = [{"role": "system", "content": "terse"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]

    rendered = render_body(
        {"m": "{MESSAGES}", "n": "{NON_SYSTEM_MESSAGES}", "s": "{SYSTEM_PROMPT}", "p": "{USER_PROMPT}"},
        chat_values(chat),
    )

    assert rendered == {"m": chat, "n": chat[1:], "s": "terse", "p": "hi"}


def test_a_placeholder_default_applies_only_when_the_request_gives_no_value():
    template = {"max_tokens": "{MAX_TOKENS|1024}", "label": "{MAX_TOKENS|none} tokens", "stop": "{MODEL_NAME|x y}"}

    assert render_body(template, {}) == {"max_tokens": 1024, "label": "none tokens", "stop": "x y"}
    assert render_body(template, {MAX_TOKENS: 5, MODEL_NAME: "m"}) == {
        "max_tokens": 5,
        "label": "5 tokens",
        "stop": "m",
    }


def test_mentions_sees_a_placeholder_with_a_default():
    assert mentions({"a": "{MAX_TOKENS|1}"}, MAX_TOKENS)
    assert not mentions({"a": "{MAX_TOKENS|1}"}, USER_PROMPT)
