"""Streaming moderation of `create(stream=True)` for both APIs, sync and async, over real SSE."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseIncompleteEvent

from guardrail import Blocked, Guard, builtin_policy
from guardrail.testing import FunctionScorer
from guardrail_openai import AsyncGuardedOpenAI, GuardedOpenAI, GuardedStream
from guardrail_openai.testing import FakeOpenAI

USER = [{"role": "user", "content": "How do I bake bread?"}]
APIS = ["chat", "responses"]
KINDS = ["sync", "async"]


async def collect(server: FakeOpenAI, guard: Guard, api: str, kind: str, *, limit: int | None = None,
                  got: list[Any] | None = None, **options: Any) -> tuple[list[Any], Any]:
    """Run one guarded streaming call; return what the caller received and the stream."""
    got = [] if got is None else got
    if kind == "sync":
        client = GuardedOpenAI(server.client(), guard, **options)
        stream = (client.chat.completions.create(model="m", messages=USER, stream=True) if api == "chat"
                  else client.responses.create(model="m", input=USER, stream=True))
        with stream:
            for item in stream:
                got.append(item)
                if limit is not None and len(got) >= limit:
                    break
        return got, stream
    aclient = AsyncGuardedOpenAI(server.async_client(), guard, **options)
    astream = await (aclient.chat.completions.create(model="m", messages=USER, stream=True) if api == "chat"
                     else aclient.responses.create(model="m", input=USER, stream=True))
    async with astream:
        async for item in astream:
            got.append(item)
            if limit is not None and len(got) >= limit:
                break
    return got, astream


def text_of(items: list[Any]) -> str:
    out = []
    for item in items:
        if isinstance(item, ChatCompletionChunk):
            out += [c.delta.content or "" for c in item.choices]
        elif item.type == "response.output_text.delta":
            out.append(item.delta)
    return "".join(out)


def assert_refusal(item: Any, refusal: str) -> None:
    if isinstance(item, ChatCompletionChunk):
        assert item.choices[0].finish_reason == "content_filter"
        assert item.choices[0].delta.content == refusal
    else:
        assert isinstance(item, ResponseIncompleteEvent)
        assert item.response.status == "incomplete"
        assert item.response.incomplete_details.reason == "content_filter"
        assert item.response.output_text == refusal


async def raw(server: FakeOpenAI, api: str) -> list[Any]:
    client = server.client()
    if api == "chat":
        return list(client.chat.completions.create(model="m", messages=USER, stream=True))
    return list(client.responses.create(model="m", input=USER, stream=True))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("mode", ["hold", "stream_first"])
@pytest.mark.parametrize("tool_call", [None, {"name": "bake", "arguments": '{"minutes": 40}'}])
async def test_allowed_stream_passes_every_upstream_item_in_order(server, make_guard, api, kind, mode, tool_call):
    server.tool_call = tool_call
    got, _ = await collect(server, make_guard(), api, kind, stream_mode=mode, every=12)
    expected = await raw(FakeOpenAI(server.reply, tool_call=tool_call), api)
    assert [type(i) for i in got] == [type(i) for i in expected]
    assert [i.model_dump() for i in got] == [i.model_dump() for i in expected]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("every", [1, 10, 25, 400])
async def test_hold_releases_only_text_a_passing_check_covered(unsafe_server, make_guard, api, kind, every):
    guard = make_guard("rewrite")
    got, _ = await collect(unsafe_server, guard, api, kind, every=every)
    assert_refusal(got[-1], guard.refusal)
    released = text_of(got[:-1]) if api == "chat" else text_of([i for i in got if i.type == "response.output_text.delta"][:-1])
    assert "kill" not in released
    passed = [r.turn.response for r in guard.scorer.requests if r.turn.response is not None and "kill" not in r.turn.response]
    assert any(p.startswith(released) for p in passed + [""]), "released text no passing check covered"
    assert not any(i.type == "response.completed" for i in got if not isinstance(i, ChatCompletionChunk))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("every", [5, 12, 30])
async def test_stream_first_stops_within_one_check_window(unsafe_server, make_guard, api, kind, every):
    guard = make_guard("rewrite")
    got, stream = await collect(unsafe_server, guard, api, kind, stream_mode="stream_first", every=every)
    assert_refusal(got[-1], guard.refusal)
    body = got[:-1] if api == "chat" else [i for i in got if getattr(i, "item_id", "") == "msg_fake"]
    released = text_of(body)
    violation_end = unsafe_server.reply.index("kill") + len("kill")
    longest_piece = max(len(p) for p in unsafe_server.reply.split(" ")) + 1
    assert len(released) <= violation_end + every + longest_piece
    assert unsafe_server.reply.startswith(released)
    assert stream.upstream.response.is_closed
    total = len(unsafe_server.reply.split(" ")) + 3
    assert unsafe_server.events_sent < total, "the upstream stream was not stopped early"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("api", APIS)
async def test_block_action_raises_and_closes_the_upstream(unsafe_server, make_guard, api, kind):
    got: list[Any] = []
    guard = make_guard("block")
    with pytest.raises(Blocked):
        if kind == "sync":
            client = GuardedOpenAI(unsafe_server.client(), guard, every=10)
            stream = (client.chat.completions.create(model="m", messages=USER, stream=True) if api == "chat"
                      else client.responses.create(model="m", input=USER, stream=True))
            for item in stream:
                got.append(item)
        else:
            aclient = AsyncGuardedOpenAI(unsafe_server.async_client(), guard, every=10)
            stream = await (aclient.chat.completions.create(model="m", messages=USER, stream=True) if api == "chat"
                            else aclient.responses.create(model="m", input=USER, stream=True))
            async for item in stream:
                got.append(item)
    assert "kill" not in text_of(got)
    assert stream.upstream.response.is_closed


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("api", APIS)
async def test_tool_call_arguments_are_held_in_hold_mode(make_guard, api, kind):
    server = FakeOpenAI("Sure, calling the tool.", tool_call={"name": "act", "arguments": '{"do": "kill him now"}'})
    guard = make_guard("rewrite")
    got, _ = await collect(server, guard, api, kind, every=8)
    assert_refusal(got[-1], guard.refusal)
    for item in got:
        if isinstance(item, ChatCompletionChunk):
            assert all(not c.delta.tool_calls for c in item.choices)
        else:
            assert item.type != "response.function_call_arguments.delta"
            assert getattr(getattr(item, "item", None), "type", None) != "function_call"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("api", APIS)
async def test_a_scorer_failing_mid_stream_releases_no_text(server, api, kind):
    def scorer(request):
        if request.turn.response is not None:
            raise RuntimeError("scorer down")
        return 0.0

    got: list[Any] = []
    with pytest.raises(Blocked, match="failed closed"):  # the default fail mode
        await collect(server, Guard(["dangerous"], scorer=FunctionScorer(scorer)), api, kind, every=10, got=got)
    assert text_of(got) == ""  # only items without text (the role chunk, response.created) came out


async def test_a_scorer_failing_mid_stream_yields_nothing_before_the_error(server):
    def scorer(request):
        if request.turn.response is not None:
            raise RuntimeError("scorer down")
        return 0.0

    client = GuardedOpenAI(server.client(), Guard(["dangerous"], scorer=FunctionScorer(scorer)), every=10)
    stream = client.chat.completions.create(model="m", messages=USER, stream=True)
    got = []
    with pytest.raises(Blocked, match="failed closed"):  # the default fail mode
        for chunk in stream:
            got.append(chunk)
    assert text_of(got) == ""
    assert stream.upstream.response.is_closed


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("api", APIS)
async def test_refused_input_streams_only_the_refusal_without_calling_openai(server, make_guard, api, kind):
    guard = make_guard("rewrite")
    bad = [{"role": "user", "content": "How do I kill a man?"}]
    if kind == "sync":
        client = GuardedOpenAI(server.client(), guard)
        stream = (client.chat.completions.create(model="m", messages=bad, stream=True) if api == "chat"
                  else client.responses.create(model="m", input=bad, stream=True))
        with stream:
            got = list(stream)
    else:
        aclient = AsyncGuardedOpenAI(server.async_client(), guard)
        stream = await (aclient.chat.completions.create(model="m", messages=bad, stream=True) if api == "chat"
                        else aclient.responses.create(model="m", input=bad, stream=True))
        async with stream:
            got = [item async for item in stream]
    assert_refusal(got[-1], guard.refusal)
    assert server.requests == []


def test_close_early_closes_the_upstream_and_forwards_attributes(server, make_guard):
    client = GuardedOpenAI(server.client(), make_guard(), stream_mode="stream_first")
    stream = client.chat.completions.create(model="m", messages=USER, stream=True)
    assert isinstance(stream, GuardedStream)
    next(stream)
    stream.close()
    assert stream.response.is_closed  # `response` forwards to the openai Stream
    assert list(stream) == []


def test_chunk_unit_checks_every_n_deltas(unsafe_server):
    calls = []

    def scorer(request):
        calls.append(request.turn.response)
        return 0.9 if request.turn.response and "kill" in request.turn.response else 0.0

    guard = Guard([builtin_policy("dangerous", action="rewrite")], scorer=FunctionScorer(scorer))
    client = GuardedOpenAI(unsafe_server.client(), guard, unit="chunks", every=3)
    got = list(client.chat.completions.create(model="m", messages=USER, stream=True))
    assert got[-1].choices[0].finish_reason == "content_filter"
    output_checks = [c for c in calls if c is not None]
    assert len(output_checks) >= 2 and "kill" in output_checks[-1]
