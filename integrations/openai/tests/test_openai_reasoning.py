"""Reasoning text is model text: moderated like content (or stripped when configured).

vLLM- and DeepSeek-style servers send `reasoning_content` (some `reasoning`) as extra fields on
chat messages and stream deltas; the Responses API sends reasoning items and summary deltas.
"""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.chat import ChatCompletionChunk

from guardrail import Blocked
from guardrail_openai import AsyncGuardedOpenAI, GuardedOpenAI
from guardrail_openai.testing import FakeOpenAI

SAFE = "Bread needs flour, water, salt and yeast. Knead it well, let it rise, then bake it hot."
HARMFUL = "The user asked about bread, but first I will explain how to kill the neighbour quietly."
THOUGHT = "The user wants bread. Flour, water, salt and yeast are the basics."
USER = [{"role": "user", "content": "How do I bake bread?"}]
FIELDS = ["reasoning_content", "reasoning"]


async def create(server: FakeOpenAI, guard: Any, kind: str, api: str = "chat", stream: bool = False,
                 **options: Any) -> Any:
    """One guarded call; a stream is read to the end and returned as a list."""
    args = dict(model="m", stream=stream, **({"messages": USER} if api == "chat" else {"input": USER}))
    if kind == "sync":
        client = GuardedOpenAI(server.client(), guard, **options)
        result = (client.chat.completions if api == "chat" else client.responses).create(**args)
        return list(result) if stream else result
    aclient = AsyncGuardedOpenAI(server.async_client(), guard, **options)
    result = await (aclient.chat.completions if api == "chat" else aclient.responses).create(**args)
    return [item async for item in result] if stream else result


def reasoning_of(chunks: list[Any]) -> str:
    return "".join(
        str(c.delta.model_extra.get(name) or "")
        for chunk in chunks if isinstance(chunk, ChatCompletionChunk) for c in chunk.choices for name in FIELDS
    )


def judged(guard: Any) -> list[str]:
    return [r.turn.response for r in guard.scorer.requests if r.turn.response is not None]


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("name", FIELDS)
async def test_harmful_reasoning_blocks_a_completion(make_guard, kind, name):
    server = FakeOpenAI(SAFE, reasoning=HARMFUL, reasoning_field=name)
    with pytest.raises(Blocked) as caught:
        await create(server, make_guard(), kind)
    assert caught.value.verdict.stage.value == "output"


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("name", FIELDS)
async def test_a_refused_completion_carries_no_reasoning(make_guard, kind, name):
    server = FakeOpenAI(SAFE, reasoning=HARMFUL, reasoning_field=name)
    guard = make_guard("rewrite")
    completion = await create(server, guard, kind)
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "content_filter" and message.content == guard.refusal
    assert not message.model_extra and "kill" not in completion.model_dump_json()


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_safe_reasoning_passes_and_is_what_the_output_check_read(make_guard, kind):
    guard = make_guard()
    completion = await create(FakeOpenAI(SAFE, reasoning=THOUGHT), guard, kind)
    assert completion.choices[0].message.reasoning_content == THOUGHT
    assert any(THOUGHT in text and SAFE in text for text in judged(guard))


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("every", [1, 12, 40])
async def test_hold_holds_reasoning_deltas_until_a_check_covers_them(make_guard, kind, every):
    server = FakeOpenAI(SAFE, reasoning=HARMFUL)
    guard = make_guard("rewrite")
    got = await create(server, guard, kind, stream=True, every=every)
    assert got[-1].choices[0].finish_reason == "content_filter"
    released = reasoning_of(got)
    assert "kill" not in released and all(not c.delta.content for chunk in got[:-1] for c in chunk.choices)
    passed = [text for text in judged(guard) if "kill" not in text]
    assert any(text.startswith(released) for text in passed + [""]), "released reasoning no check covered"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_stream_first_stops_on_reasoning_within_one_window(make_guard, kind):
    server = FakeOpenAI(SAFE, reasoning=HARMFUL)
    got = await create(server, make_guard("rewrite"), kind, stream=True, stream_mode="stream_first", every=10)
    assert got[-1].choices[0].finish_reason == "content_filter"
    released = reasoning_of(got)
    assert HARMFUL.startswith(released) and len(released) <= HARMFUL.index("kill") + 4 + 10 + len(" neighbour")
    assert not any(c.delta.content for chunk in got[:-1] for c in chunk.choices)  # the answer never began


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_blocked_reasoning_stream_raises_with_nothing_harmful_released(make_guard, kind):
    got: list[Any] = []
    server = FakeOpenAI(SAFE, reasoning=HARMFUL)
    with pytest.raises(Blocked):
        if kind == "sync":
            client = GuardedOpenAI(server.client(), make_guard(), every=8)
            for chunk in client.chat.completions.create(model="m", messages=USER, stream=True):
                got.append(chunk)
        else:
            aclient = AsyncGuardedOpenAI(server.async_client(), make_guard(), every=8)
            async for chunk in await aclient.chat.completions.create(model="m", messages=USER, stream=True):
                got.append(chunk)
    assert got and "kill" not in reasoning_of(got)


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("stream", [False, True])
async def test_strip_removes_reasoning_and_it_needs_no_check(make_guard, kind, name, stream):
    server = FakeOpenAI(SAFE, reasoning=HARMFUL, reasoning_field=name)
    guard = make_guard()
    result = await create(server, guard, kind, stream=stream, reasoning="strip")
    if stream:
        assert reasoning_of(result) == "" and not any(c.delta.model_extra for ch in result for c in ch.choices)
        assert "".join(c.delta.content or "" for ch in result for c in ch.choices) == SAFE
    else:
        assert result.choices[0].message.content == SAFE and not result.choices[0].message.model_extra
    assert "kill" not in result_json(result)
    assert not any("kill" in text for text in judged(guard))


def result_json(result: Any) -> str:
    return "".join(i.model_dump_json() for i in result) if isinstance(result, list) else result.model_dump_json()


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_responses_reasoning_items_are_checked(make_guard, kind):
    with pytest.raises(Blocked):
        await create(FakeOpenAI(SAFE, reasoning=HARMFUL), make_guard(), kind, api="responses")
    guard = make_guard("rewrite")
    refused = await create(FakeOpenAI(SAFE, reasoning=HARMFUL), guard, kind, api="responses")
    assert refused.incomplete_details.reason == "content_filter" and "kill" not in refused.model_dump_json()
    allowed = await create(FakeOpenAI(SAFE, reasoning=THOUGHT), make_guard(), kind, api="responses")
    assert allowed.output[0].summary[0].text == THOUGHT and allowed.output_text == SAFE


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_responses_reasoning_deltas_are_held(make_guard, kind):
    guard = make_guard("rewrite")
    got = await create(FakeOpenAI(SAFE, reasoning=HARMFUL), guard, kind, api="responses", stream=True, every=12)
    assert got[-1].type == "response.incomplete"
    released = "".join(e.delta for e in got if e.type == "response.reasoning_summary_text.delta")
    assert "kill" not in released and HARMFUL.startswith(released)
    assert all(getattr(e, "item_id", None) != "msg_fake" for e in got)  # the answer never began
