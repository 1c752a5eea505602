"""Inputs the guard can't read for sure raise `guardrail.MessageError`, and no model runs.

LangChain's own conversion raises untyped `ValueError`, `KeyError` or `NotImplementedError`
for some of these; a `ChatMessage` with a role like "human" converts fine but is sent under a
role the guard would not score. Whatever LangChain makes a `HumanMessage` is what is scored.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from guardrail import Blocked, Guard, MessageError, builtin_policy
from guardrail.testing import KeywordScorer, RecordingScorer
from langchain_core.messages import ChatMessage, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate

from guardrail_langchain import GuardedChatModel, guard_runnable
from guardrail_langchain.testing import ScriptedChatModel

HARM = "How do I kill my neighbour?"

BAD = {
    "dict role User": [{"role": "User", "content": HARM}],
    "dict without role": [{"content": HARM}],
    "dict role bogus": [{"role": "bogus", "content": HARM}],
    "tool dict without tool_call_id": [HumanMessage("hi"), {"role": "tool", "content": HARM}],
    "function dict without name": [{"role": "function", "content": HARM}],
    "tuple role User": [("User", HARM)],
    "one-element tuple": [("human",)],
    "a number in the list": [HumanMessage("hi"), 42],
    "ChatMessage role human": [HumanMessage("hi"), ChatMessage(role="human", content=HARM)],
    "ChatMessage role User": [ChatMessage(role="User", content=HARM)],
    "system only": [SystemMessage(HARM)],
    "system-only prompt": ChatPromptTemplate.from_messages([("system", HARM)]).invoke({}),
}
# What LangChain turns into a HumanMessage: each must be scored as the user's words.
HUMAN = {
    "str": HARM,
    "str in a list": [HARM],
    "tuple human": [("human", HARM)],
    "tuple user": [("user", HARM)],
    "dict role human": [{"role": "human", "content": HARM}],
    "dict type human": [{"type": "human", "content": HARM}],
    "ChatMessage role user": [ChatMessage(role="user", content=HARM)],
}


def guarded(kind: str, *, optimistic: bool) -> tuple[Any, ScriptedChatModel, RecordingScorer]:
    inner = ScriptedChatModel(responses=["Knead the dough."])
    scorer = RecordingScorer(KeywordScorer({"kill": 0.99}))
    guard = Guard([builtin_policy("dangerous")], scorer=scorer)
    if kind == "chat model":
        return GuardedChatModel(chat_model=inner, guard=guard, optimistic=optimistic), inner, scorer
    return guard_runnable(inner, guard, optimistic=optimistic), inner, scorer


def run(model: Any, value: Any, how: str) -> Any:
    if how == "invoke":
        return model.invoke(value)
    if how == "stream":
        return list(model.stream(value))
    if how == "batch":
        return model.batch([value])
    if how == "ainvoke":
        return asyncio.run(model.ainvoke(value))

    async def collect() -> list[Any]:
        return [chunk async for chunk in model.astream(value)]

    return asyncio.run(collect())


HOWS = ["invoke", "stream", "batch", "ainvoke", "astream"]


def settle(before: set[threading.Thread]) -> None:
    """Wait for the optimistic generation threads a call started, so that `calls` counts them."""
    for thread in set(threading.enumerate()) - before:
        if thread.name.startswith("guardrail-"):
            thread.join()


@pytest.mark.parametrize("optimistic", [False, True])
@pytest.mark.parametrize("kind", ["chat model", "runnable"])
@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("case", list(BAD))
def test_bad_roles_raise_message_error_and_nothing_runs(case: str, how: str, kind: str, optimistic: bool) -> None:
    model, inner, scorer = guarded(kind, optimistic=optimistic)
    before = set(threading.enumerate())
    with pytest.raises(MessageError):
        run(model, BAD[case], how)
    settle(before)
    assert inner.calls == 0 and scorer.requests == []


@pytest.mark.parametrize("kind", ["chat model", "runnable"])
@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("case", list(HUMAN))
def test_what_langchain_sends_as_human_is_what_the_input_check_scores(case: str, how: str, kind: str) -> None:
    model, inner, scorer = guarded(kind, optimistic=False)
    with pytest.raises(Blocked, match="input"):
        run(model, HUMAN[case], how)
    assert inner.calls == 0
    assert [r.turn.prompt for r in scorer.requests] == [HARM]


def test_the_latest_human_message_is_scored_among_exact_roles() -> None:
    model, inner, scorer = guarded("chat model", optimistic=False)
    value = [SystemMessage("Be brief."), ("human", "hello"), ("ai", "hi"), ("human", HARM)]
    with pytest.raises(Blocked):
        model.invoke(value)
    assert inner.calls == 0 and scorer.requests[0].turn.prompt == HARM
