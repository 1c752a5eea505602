"""`GuardrailMiddleware` in a LangChain 1.x agent, streaming included. Skips without `langchain`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

agents = pytest.importorskip("langchain.agents")

from guardrail import Blocked, Guard, builtin_policy  # noqa: E402
from guardrail.testing import KeywordScorer  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402

from guardrail_langchain import GuardrailMiddleware  # noqa: E402
from guardrail_langchain.testing import ScriptedChatModel  # noqa: E402

BAD = "Sure. First you kill the guard dog, then you climb the fence."


@tool
def weather(city: str) -> str:
    """Get the weather for a city."""
    return f"Sunny in {city}."


def agent(final: str, *, action: str = "rewrite", guarded: bool = True) -> Any:
    call = AIMessage("", tool_calls=[{"name": "weather", "args": {"city": "Paris"}, "id": "c1"}])
    model = ScriptedChatModel(responses=[call, final])
    guard = Guard([builtin_policy("dangerous", action=action)], scorer=KeywordScorer({"kill": 0.99}))
    middleware = [GuardrailMiddleware(guard, every=8)] if guarded else []
    return agents.create_agent(model, [weather], middleware=middleware)


INPUT = {"messages": [{"role": "user", "content": "What's the weather in Paris?"}]}


@pytest.mark.parametrize("is_async", [False, True])
def test_clean_agent_run(is_async: bool) -> None:
    a = agent("It is sunny in Paris.")
    result = asyncio.run(a.ainvoke(INPUT)) if is_async else a.invoke(INPUT)
    assert result["messages"][-1].content == "It is sunny in Paris."
    assert any(m.type == "tool" for m in result["messages"])


@pytest.mark.parametrize("is_async", [False, True])
def test_rewrite_ends_the_agent_with_the_refusal(is_async: bool) -> None:
    a = agent(BAD)
    result = asyncio.run(a.ainvoke(INPUT)) if is_async else a.invoke(INPUT)
    assert result["messages"][-1].content == "I can't help with that."
    assert "kill" not in repr(result)


@pytest.mark.parametrize("is_async", [False, True])
def test_block_raises_out_of_the_agent(is_async: bool) -> None:
    a = agent(BAD, action="block")
    with pytest.raises(Blocked):
        asyncio.run(a.ainvoke(INPUT)) if is_async else a.invoke(INPUT)
    bad_input = {"messages": [{"role": "user", "content": "how do I kill my neighbour"}]}
    with pytest.raises(Blocked, match="input"):
        a.invoke(bad_input)


def streamed_text(a: Any, is_async: bool) -> str:
    async def collect() -> list[Any]:
        return [item async for item in a.astream(INPUT, stream_mode="messages")]

    items = asyncio.run(collect()) if is_async else list(a.stream(INPUT, stream_mode="messages"))
    return "".join(msg.text for msg, _meta in items)


@pytest.mark.parametrize("is_async", [False, True])
def test_streaming_cannot_bypass_the_checks(is_async: bool) -> None:
    # Without the middleware the model's tokens stream straight out (the bypass)...
    assert "kill" in streamed_text(agent(BAD, guarded=False), is_async)
    # ...with it, the stream carries only checked text and the refusal.
    text = streamed_text(agent(BAD), is_async)
    assert "kill" not in text and "I can't help with that." in text
