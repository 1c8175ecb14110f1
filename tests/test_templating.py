import json

from hypothesis import given
from hypothesis import strategies as st

from inference.templating import MODEL_NAME, MODEL_TEMPERATURE, USER_PROMPT, mentions, render_body, render_url

VALUES = {USER_PROMPT: "hello", MODEL_TEMPERATURE: 0.2, MODEL_NAME: "m"}


def test_a_whole_string_placeholder_becomes_the_typed_value():
    body = {"t": "{MODEL_TEMPERATURE}", "p": "{USER_PROMPT}", "m": "{MODEL_NAME}"}
    assert render_body(body, VALUES) == {"t": 0.2, "p": "hello", "m": "m"}


def test_a_placeholder_inside_text_is_replaced_as_text():
    body = {"q": "Q: {USER_PROMPT} (t={MODEL_TEMPERATURE}, m={MODEL_NAME})"}
    assert render_body(body, VALUES) == {"q": "Q: hello (t=0.2, m=m)"}


def test_it_walks_nested_objects_and_lists():
    body = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "{USER_PROMPT}"}],
            "deep": [[{"x": ["{MODEL_NAME}"]}]]}
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

PLACEHOLDER = "{USER_PROMPT}"
plain_text = st.text().filter(lambda text: "{" not in text)
leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                   plain_text, st.just(PLACEHOLDER))
templates = st.recursive(
    leaves,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(plain_text, children, max_size=4)),
    max_leaves=20,
)


def expected(template, prompt):
    if template == PLACEHOLDER:
        return prompt
    if isinstance(template, dict):
        return {key: expected(value, prompt) for key, value in template.items()}
    if isinstance(template, list):
        return [expected(item, prompt) for item in template]
    return template


@given(template=templates, prompt=st.text())
def test_any_prompt_gives_valid_json_where_only_placeholder_leaves_change(template, prompt):
    rendered = render_body(template, {USER_PROMPT: prompt, MODEL_NAME: "m"})

    assert json.loads(json.dumps(rendered, ensure_ascii=False)) == expected(template, prompt)


@given(prefix=plain_text, suffix=plain_text, prompt=st.text())
def test_any_prompt_inside_text_is_inserted_verbatim(prefix, suffix, prompt):
    rendered = render_body([prefix + PLACEHOLDER + suffix], {USER_PROMPT: prompt})

    assert rendered == [prefix + prompt + suffix]
