"""Inputs to messages, outputs to text, refusals in the caller's shape."""

from __future__ import annotations

import pytest
from guardrail import MessageError
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate
from pydantic import BaseModel

from guardrail_langchain import GuardOptions, input_messages, output_text
from guardrail_langchain._convert import refusal_chunk, refusal_output, text_of


def test_str_input_is_one_user_message() -> None:
    assert input_messages("hi") == [{"role": "user", "content": "hi"}]


def test_message_roles_map_to_openai_roles() -> None:
    messages = [
        SystemMessage("be brief"),
        HumanMessage("what is 2+2"),
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 2, "b": 2}, "id": "c1"}]),
        ToolMessage("4", tool_call_id="c1"),
    ]
    roles = [m["role"] for m in input_messages(messages)]
    assert roles == ["system", "user", "assistant", "tool"]


def test_message_likes_and_prompt_values() -> None:
    assert input_messages([("human", "a"), {"role": "assistant", "content": "b"}, "c"]) == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    prompt = ChatPromptTemplate.from_messages([("system", "s"), ("human", "{q}")]).invoke({"q": "hello"})
    assert input_messages(prompt)[-1] == {"role": "user", "content": "hello"}


def test_text_blocks_are_joined_and_other_blocks_kept_for_the_core_to_refuse() -> None:
    message = HumanMessage(content=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
    assert input_messages([message]) == [{"role": "user", "content": "a\nb"}]
    image = HumanMessage(content=[{"type": "image_url", "image_url": {"url": "http://x/y.png"}}])
    assert isinstance(input_messages([image])[0]["content"], list)


def test_dict_input_uses_the_key_or_messages_or_all_strings() -> None:
    assert input_messages({"question": "q", "n": 3}) == [{"role": "user", "content": "q"}]
    assert input_messages({"a": "one", "b": "two"})[0]["content"] == "one\ntwo"
    assert input_messages({"messages": [("human", "m")], "x": 1}) == [{"role": "user", "content": "m"}]
    assert input_messages({"question": "q", "history": [("human", "h")]}, input_key="question") == [
        {"role": "user", "content": "q"}
    ]


@pytest.mark.parametrize(
    ("value", "key", "match"),
    [
        ({"question": "q", "history": [("human", "h")]}, None, "input_key"),
        ({"a": "q"}, "b", "no key 'b'"),
        ({"n": 1}, None, "no text"),
        (42, None, "got int"),
        ([("nonsense-role", "x")], None, "can't be read"),
    ],
)
def test_bad_inputs_raise_message_error(value: object, key: str | None, match: str) -> None:
    with pytest.raises(MessageError, match=match):
        input_messages(value, input_key=key)


def test_output_text_covers_content_tool_calls_and_structured_values() -> None:
    class Person(BaseModel):
        name: str

    message = AIMessage("calling", tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "1"}])
    assert output_text(message) == 'calling\nsearch({"q": "x"})'
    assert output_text("plain") == "plain"
    assert output_text(Person(name="Ann")) == '{"name":"Ann"}'
    assert output_text({"raw": AIMessage("r"), "parsed": {"a": 1}}) == '{"raw": "r", "parsed": {"a": 1}}'


def test_output_blocks_that_cannot_be_checked_raise() -> None:
    assert text_of([{"type": "text", "text": "a"}, {"type": "reasoning", "reasoning": "b"}]) == "ab"
    block = {"type": "tool_use", "id": "x", "name": "f", "input": {"q": 1}}
    assert text_of([block, "c"], parsed_call_ids=frozenset({"x"})) == "c"  # checked as a tool call
    assert text_of([block, "c"]) == 'f({"q": 1})c'  # no parsed call carries it: scored here
    with pytest.raises(MessageError, match="image"):
        text_of([{"type": "image", "url": "http://x"}])


def test_refusals_take_the_callers_shape() -> None:
    assert refusal_output(str, "no") == "no"
    message = refusal_output(None, "no", like=AIMessage("bad", id="m1"))
    assert isinstance(message, AIMessage) and message.content == "no" and message.id == "m1"
    assert message.response_metadata["finish_reason"] == "content_filter"
    assert isinstance(refusal_output(None, "no", like=AIMessageChunk("x")), AIMessageChunk)
    assert refusal_output(dict, "no") is None
    assert refusal_chunk(str, "no") == "no"
    assert isinstance(refusal_chunk(None, "no"), AIMessageChunk)


@pytest.mark.parametrize(
    "kwargs",
    [{"stream_mode": "later"}, {"every": 0}, {"every": True}, {"unit": "tokens"}, {"input_key": ""}, {"optimistic": 1}],
)
def test_options_are_validated(kwargs: dict) -> None:
    from guardrail import ConfigError

    with pytest.raises(ConfigError):
        GuardOptions(**kwargs)
