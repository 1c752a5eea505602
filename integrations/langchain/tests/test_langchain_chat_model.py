"""`GuardedChatModel` beyond the standard tests: actions, tools, structured output, events."""

from __future__ import annotations

import asyncio

import pytest
from guardrail import Blocked, Guard, builtin_policy
from guardrail.testing import KeywordScorer, RecordingScorer
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableBinding
from langchain_core.tools import tool
from pydantic import BaseModel

from guardrail_langchain import GuardedChatModel, GuardedRunnable
from guardrail_langchain.testing import ScriptedChatModel


def guarded(*responses: object, action: str = "block", **options: object) -> GuardedChatModel:
    guard = Guard([builtin_policy("dangerous", action=action)], scorer=KeywordScorer({"kill": 0.99}))
    return GuardedChatModel(chat_model=ScriptedChatModel(responses=list(responses)), guard=guard, **options)


@tool
def search(query: str) -> str:
    """Search the web."""
    return "results"


@pytest.mark.parametrize("is_async", [False, True])
def test_invoke_checks_input_then_output(is_async: bool) -> None:
    model = guarded("Knead the dough.", "I will kill you.")

    def call(text: str) -> AIMessage:
        return asyncio.run(model.ainvoke(text)) if is_async else model.invoke(text)

    assert call("bread?").content == "Knead the dough."
    with pytest.raises(Blocked, match="input"):
        call("how to kill")
    assert model.chat_model.calls == 1
    with pytest.raises(Blocked, match="output"):
        call("and now?")


@pytest.mark.parametrize("is_async", [False, True])
def test_rewrite_returns_a_refusal_message(is_async: bool) -> None:
    model = guarded("I will kill you.", action="rewrite")
    out = asyncio.run(model.ainvoke("hi")) if is_async else model.invoke("hi")
    assert isinstance(out, AIMessage) and out.content == "I can't help with that."
    assert out.tool_calls == []


def test_bind_tools_delegates_and_keeps_the_guard() -> None:
    call = AIMessage("", tool_calls=[{"name": "search", "args": {"query": "how to kill a man"}, "id": "c1"}])
    model = guarded(call, AIMessage("", tool_calls=[{"name": "search", "args": {"query": "bread"}, "id": "c2"}]))
    bound = model.bind_tools([search], tool_choice="any")
    assert isinstance(bound, RunnableBinding) and bound.bound is model
    assert bound.kwargs["tools"][0]["function"]["name"] == "search"
    assert bound.kwargs["tool_choice"] == "any"
    with pytest.raises(Blocked):  # tool-call arguments are output too
        bound.invoke("find something")
    assert bound.invoke("find bread").tool_calls[0]["args"] == {"query": "bread"}


def test_with_structured_output_is_guarded() -> None:
    class Person(BaseModel):
        name: str

    ok = AIMessage("", tool_calls=[{"name": "Person", "args": {"name": "Ann"}, "id": "1"}])
    bad = AIMessage("", tool_calls=[{"name": "Person", "args": {"name": "kill"}, "id": "2"}])
    structured = guarded(ok, bad).with_structured_output(Person)
    assert isinstance(structured, GuardedRunnable)
    assert structured.invoke("who?") == Person(name="Ann")
    with pytest.raises(Blocked):
        structured.invoke("who?")
    with pytest.raises(Blocked, match="input"):
        structured.invoke("kill who?")


def test_rewrite_on_structured_output_blocks() -> None:
    class Person(BaseModel):
        name: str

    bad = AIMessage("", tool_calls=[{"name": "Person", "args": {"name": "kill"}, "id": "2"}])
    with pytest.raises(Blocked):
        guarded(bad, action="rewrite").with_structured_output(Person).invoke("who?")


def test_streaming_flag_moderates_invoke_too() -> None:
    scorer = RecordingScorer(KeywordScorer({}))
    model = GuardedChatModel(
        chat_model=ScriptedChatModel(responses=["one two three four five six seven"]),
        guard=Guard(["dangerous"], scorer=scorer),
        streaming=True,
        every=8,
    )
    assert model.invoke("q").content == "one two three four five six seven"
    output_checks = [r for r in scorer.requests if r.turn.response is not None]
    assert len(output_checks) > 2  # checked window by window, not once


def test_astream_events_never_show_the_inner_models_tokens() -> None:
    model = guarded("Sure. First kill the lights, then leave.", action="rewrite", every=5)

    async def events() -> list[dict]:
        return [e async for e in model.astream_events("plan?", version="v2")]

    seen = asyncio.run(events())
    assert "kill" not in repr(seen)
    streams = [e for e in seen if e["event"] == "on_chat_model_stream"]
    assert streams and "".join(e["data"]["chunk"].content for e in streams).endswith("I can't help with that.")


def test_tracing_params_and_profile_come_from_the_inner_model() -> None:
    model = guarded("x")
    params = model._get_ls_params(model="other")
    assert params["ls_model_name"] == "other" and params["ls_model_type"] == "chat"
    assert model._get_ls_params()["ls_model_name"] == "scripted-chat-model"
    assert model._llm_type == "guarded-scripted-chat-model"
    assert model.profile == model.chat_model.profile


def test_invalid_options_fail_at_construction() -> None:
    # pydantic wraps the ConfigError in a ValidationError (both are ValueErrors)
    with pytest.raises(ValueError, match="every must be a positive integer"):
        guarded("x", every=0)
    with pytest.raises(ValueError, match="stream_mode"):
        guarded("x", stream_mode="later")


class Runs(BaseCallbackHandler):
    def __init__(self) -> None:
        self.starts: list[tuple[object, object, list[str]]] = []

    def on_chat_model_start(self, serialized: object, messages: object, *, run_id: object, parent_run_id: object = None, tags: object = None, **kw: object) -> None:
        self.starts.append((run_id, parent_run_id, list(tags or [])))


@pytest.mark.parametrize("how", ["invoke", "stream", "ainvoke", "astream"])
def test_the_inner_model_runs_as_a_child_run(how: str) -> None:
    model = guarded("fine words here")
    runs = Runs()
    config = {"callbacks": [runs], "tags": ["t"]}
    if how == "invoke":
        model.invoke("q", config)
    elif how == "stream":
        list(model.stream("q", config))
    elif how == "ainvoke":
        asyncio.run(model.ainvoke("q", config))
    else:
        async def go() -> None:
            async for _ in model.astream("q", config):
                pass

        asyncio.run(go())
    if how in ("stream", "astream"):
        # BaseChatModel.stream calls `_stream` without a run manager, so the inner model has
        # no parent run to attach to and runs untraced; only the guarded run is reported.
        ((outer, parent, tags),) = runs.starts
        assert parent is None and "t" in tags
        return
    (outer, parent, tags), (inner, inner_parent, inner_tags) = runs.starts
    assert parent is None and inner_parent == outer
    assert "t" in tags and "t" in inner_tags
