import pytest
from hypothesis import given
from hypothesis import strategies as st

from inference.extract import PathMismatch, PathSyntaxError, apply_path, parse_path

RESPONSE = {"data": {"items": [{"attributes": {"answer": "first"}}, {"attributes": {"answer": "last"}}]}}


def extract(document, path):
    return apply_path(document, parse_path(path), path=path)


@pytest.mark.parametrize(
    "path, value",
    [
        ("data.items[].attributes.answer", "first"),
        ("data.items[0].attributes.answer", "first"),
        ("data.items[1].attributes.answer", "last"),
        ("data.items[-1].attributes.answer", "last"),
        ("data.items", RESPONSE["data"]["items"]),
        ("", RESPONSE),
    ],
)
def test_it_follows_the_path(path, value):
    assert extract(RESPONSE, path) == value


def test_it_indexes_nested_lists_and_a_top_level_list():
    assert extract([[1, [2, 3]]], "[0][1][-1]") == 3


@pytest.mark.parametrize(
    "path, says",
    [
        ("a..b", "segment 2 is empty"),
        (".a", "segment 1 is empty"),
        ("a.", "segment 2 is empty"),
        ("a[x]", "segment 1"),
        ("a[1", "segment 1"),
        ("a]", "segment 1"),
        ("a[-]", "without a number"),
    ],
)
def test_bad_syntax_is_refused_saying_where(path, says):
    with pytest.raises(PathSyntaxError, match=says.replace("[", r"\[")):
        parse_path(path)


@pytest.mark.parametrize(
    "path, at, reason",
    [
        ("data.missing.x", "data.missing", "no key 'missing' (keys: items)"),
        ("data.items[5]", "data.items[5]", "index out of range (list has 2 items)"),
        ("data.items.answer", "data.items.answer", "expected an object, found a list"),
        ("data[0]", "data[0]", "expected a list, found an object"),
    ],
)
def test_a_mismatch_names_the_step_that_failed(path, at, reason):
    with pytest.raises(PathMismatch) as caught:
        extract(RESPONSE, path)
    assert (caught.value.path, caught.value.at, caught.value.reason) == (path, at, reason)


# --- properties ------------------------------------------------------------------------------

keys = st.text(min_size=1).filter(lambda key: not set(key) & set(".[]"))
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.text())


@st.composite
def document_with_path(draw):
    """A JSON document, a path into it built step by step, and the value at its end."""
    leaf = value = draw(json_leaves)
    path_parts: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            key = draw(keys)
            siblings = draw(st.dictionaries(keys, json_leaves, max_size=3))
            siblings.pop(key, None)
            value = {**siblings, key: value}
            path_parts.insert(0, "." + key)
        else:
            before = draw(st.lists(json_leaves, max_size=3))
            after = draw(st.lists(json_leaves, max_size=3))
            value_list = [*before, value, *after]
            index = draw(st.sampled_from([len(before), len(before) - len(value_list)]))
            shown = "[]" if index == 0 and draw(st.booleans()) else f"[{index}]"
            value = value_list
            path_parts.insert(0, shown)
    path = "".join(path_parts).lstrip(".")
    return value, path, leaf


@given(document_with_path())
def test_a_path_built_into_a_document_finds_the_leaf_it_was_built_from(case):
    document, path, leaf = case
    assert extract(document, path) == leaf


@given(st.text(max_size=30))
def test_any_text_either_parses_or_is_refused_cleanly(path):
    try:
        parse_path(path)
    except PathSyntaxError as exc:
        assert str(exc)
