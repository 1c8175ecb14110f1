"""Input serializers whose fields are bound once per class still validate each request alone."""

from inference.openai_views import ChatInput


def test_the_fields_are_built_once_and_shared_by_every_instance():
    first, second = ChatInput(data={}), ChatInput(data={})

    assert first.fields is second.fields
    assert first.fields["messages"].child.fields is second.fields["messages"].child.fields


def test_one_requests_errors_do_not_reach_the_next():
    bad = ChatInput(data={"model": 42, "messages": [{"role": "user"}, {"content": "no role"}]})
    assert not bad.is_valid()
    good = ChatInput(data={"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})

    assert good.is_valid(), good.errors
    assert good.validated_data["model"] == "m" and good.validated_data["max_tokens"] == 5
    assert set(bad.errors) == {"model", "messages"}
    assert bad.errors["messages"][1] == {"role": ["This field is required."]}
    assert ChatInput(data={"model": "m", "messages": []}).is_valid() is False  # allow_empty=False holds
