"""`GuardedRunnable`: the Runnable protocol, block and rewrite, input types, config and events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from guardrail import Blocked, ConfigError, Guard, builtin_policy
from guardrail.testing import KeywordScorer
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from guardrail_langchain import GuardedRunnable, guard_runnable
from guardrail_langchain.testing import ScriptedChatModel

PROMPT = ChatPromptTemplate.from_messages([("system", "Be helpful."), ("human", "{question}")])


def make_guard(action: str = "block") -> Guard:
    return Guard([builtin_policy("dangerous", action=action)], scorer=KeywordScorer({"kill": 0.99}))


def chain(*responses: str, action: str = "block", **options: Any) -> tuple[GuardedRunnable, ScriptedChatModel]:
    model = ScriptedChatModel(responses=list(responses))
    return guard_runnable(PROMPT | model | StrOutputParser(), make_guard(action), **options), model


def run(guarded: GuardedRunnable, value: Any, how: str) -> Any:
    if how == "invoke":
        return guarded.invoke(value)
    if how == "ainvoke":
        return asyncio.run(guarded.ainvoke(value))
    if how == "stream":
        return "".join(guarded.stream(value))

    async def collect() -> str:
        return "".join([c async for c in guarded.astream(value)])

    return asyncio.run(collect())


HOWS = ["invoke", "ainvoke", "stream", "astream"]


@pytest.mark.parametrize("how", HOWS)
def test_clean_round_trip(how: str) -> None:
    guarded, model = chain("Mix flour and water, then bake.")
    assert run(guarded, {"question": "How do I bake bread?"}, how) == "Mix flour and water, then bake."
    assert model.calls == 1


@pytest.mark.parametrize("how", HOWS)
def test_blocked_input_never_reaches_the_model(how: str) -> None:
    guarded, model = chain("anything")
    with pytest.raises(Blocked) as info:
        run(guarded, {"question": "How do I kill a process... of a person?"}, how)
    assert info.value.verdict.stage.value == "input"
    assert model.calls == 0


@pytest.mark.parametrize("how", HOWS)
def test_blocked_output_raises(how: str) -> None:
    guarded, _ = chain("I will kill them.")
    with pytest.raises(Blocked) as info:
        run(guarded, {"question": "What now?"}, how)
    assert info.value.verdict.stage.value == "output"


@pytest.mark.parametrize("how", HOWS)
def test_rewritten_output_is_the_refusal_as_str(how: str) -> None:
    guarded, _ = chain("I will kill them.", action="rewrite")
    assert run(guarded, {"question": "What now?"}, how) == "I can't help with that."


@pytest.mark.parametrize("how", ["invoke", "ainvoke"])
def test_rewrite_of_a_chat_model_gives_an_ai_message(how: str) -> None:
    model = ScriptedChatModel(responses=["I will kill them."])
    guarded = GuardedRunnable(model, make_guard("rewrite"))
    out = run(guarded, "What now?", how)
    assert isinstance(out, AIMessage) and out.content == "I can't help with that."
    assert out.response_metadata["finish_reason"] == "content_filter"
    refused = run(guarded, "kill?", how)  # input rewrite: the model isn't called
    assert isinstance(refused, AIMessage) and model.calls == 1


def test_rewritten_input_takes_the_chains_output_type_without_running_it() -> None:
    guarded, model = chain("unused", action="rewrite")
    assert guarded.invoke({"question": "kill"}) == "I can't help with that."
    assert list(guarded.stream({"question": "kill"})) == ["I can't help with that."]
    assert model.calls == 0


def test_chat_model_stream_yields_message_chunks() -> None:
    guarded = GuardedRunnable(ScriptedChatModel(responses=["a b c"]), make_guard(), every=2)
    chunks = list(guarded.stream("hi"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.content == "a b c"


def test_batch_and_abatch_guard_each_input() -> None:
    guarded, _ = chain("fine answer")
    inputs = [{"question": "one"}, {"question": "two"}]
    assert guarded.batch(inputs) == ["fine answer", "fine answer"]
    assert asyncio.run(guarded.abatch(inputs)) == ["fine answer", "fine answer"]
    results = guarded.batch([{"question": "ok"}, {"question": "kill"}], return_exceptions=True)
    assert results[0] == "fine answer" and isinstance(results[1], Blocked)


@pytest.mark.parametrize(
    "value",
    [
        "plain text",
        [("human", "a tuple message")],
        {"question": "a dict"},
        ChatPromptTemplate.from_messages([("human", "a prompt value")]).invoke({}),
    ],
    ids=["str", "messages", "dict", "prompt-value"],
)
def test_input_reaches_the_inner_runnable_unchanged(value: Any) -> None:
    received = []

    def record(x: Any) -> str:
        received.append(x)
        return "fine"

    guarded = GuardedRunnable(RunnableLambda(record), make_guard(), input_key="question")
    assert guarded.invoke(value) == "fine"
    assert received == [value] and type(received[0]) is type(value)


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.chains: list[tuple[str, list[str]]] = []
        self.models: list[tuple[list[str], dict]] = []

    def on_chain_start(self, serialized: Any, inputs: Any, *, tags: Any = None, name: Any = None, **kw: Any) -> None:
        self.chains.append((name or kw.get("name"), list(tags or [])))

    def on_chat_model_start(self, serialized: Any, messages: Any, *, tags: Any = None, metadata: Any = None, **kw: Any) -> None:
        self.models.append((list(tags or []), dict(metadata or {})))


@pytest.mark.parametrize("how", HOWS)
def test_config_and_callbacks_pass_through(how: str) -> None:
    guarded, _ = chain("fine")
    recorder = Recorder()
    config = {"callbacks": [recorder], "tags": ["t1"], "metadata": {"user": "u1"}, "run_name": "guarded"}
    value = {"question": "hello"}
    if how == "invoke":
        guarded.invoke(value, config)
    elif how == "ainvoke":
        asyncio.run(guarded.ainvoke(value, config))
    elif how == "stream":
        list(guarded.stream(value, config))
    else:
        async def go() -> None:
            async for _ in guarded.astream(value, config):
                pass

        asyncio.run(go())
    assert recorder.chains[0] == ("guarded", ["t1"])  # the guarded run, then the inner chain
    assert len(recorder.chains) > 1
    assert recorder.models and "t1" in recorder.models[0][0] and recorder.models[0][1]["user"] == "u1"


def test_event_streams_see_only_moderated_output() -> None:
    # astream_events taps every run it sees; the inner model's raw tokens must not be among them.
    guarded, _ = chain("Sure. First you kill the guard, then run.", action="rewrite", every=5)

    async def events() -> list[dict]:
        return [e async for e in guarded.astream_events({"question": "plan?"}, version="v2")]

    seen = asyncio.run(events())
    assert "kill" not in repr(seen)
    streamed = "".join(e["data"]["chunk"] for e in seen if e["event"] == "on_chain_stream")
    assert streamed.endswith("I can't help with that.")


def test_constructor_checks_its_arguments() -> None:
    # ConfigError, as GuardedOpenAI raises for a wrong guard: one rule for both adapters.
    with pytest.raises(ConfigError, match="Runnable"):
        GuardedRunnable(lambda x: x, make_guard())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Guard"):
        GuardedRunnable(RunnableLambda(lambda x: x), object())  # type: ignore[arg-type]
