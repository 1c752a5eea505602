"""Optimistic input checking: the call starts while the input check runs; nothing is released
before the check passed; a blocked input cancels (async) or closes and discards (sync) the call."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from openai.types.chat import ChatCompletion

from guardrail import Blocked, Guard, builtin_policy
from guardrail.testing import FunctionScorer, KeywordScorer
from guardrail_openai import AsyncGuardedOpenAI, GuardedOpenAI
from guardrail_openai.testing import FakeOpenAI

USER = [{"role": "user", "content": "How do I bake bread?"}]
BAD_USER = [{"role": "user", "content": "How do I kill my neighbour?"}]


def slow_guard(seconds: float, events: list[str]) -> Guard:
    def score(request):
        if request.turn.response is None:
            time.sleep(seconds)
            events.append("input checked")
        return 0.99 if "kill" in (request.turn.response or request.turn.prompt) else 0.01

    return Guard(["dangerous"], scorer=FunctionScorer(score))


def test_sync_optimistic_overlaps_the_call_with_the_input_check():
    events: list[str] = []
    server = FakeOpenAI(lambda body: events.append("called") or "Knead and bake.")
    client = GuardedOpenAI(server.client(), slow_guard(0.2, events), optimistic=True)
    completion = client.chat.completions.create(model="m", messages=USER)
    assert type(completion) is ChatCompletion and completion.choices[0].message.content == "Knead and bake."
    assert events == ["called", "input checked"]  # OpenAI was called before the check finished


def test_sync_optimistic_blocked_input_raises_and_closes_the_stream():
    events: list[str] = []
    server = FakeOpenAI("Knead and bake.")
    client = GuardedOpenAI(server.client(), slow_guard(0.2, events), optimistic=True)
    with pytest.raises(Blocked):
        client.chat.completions.create(model="m", messages=BAD_USER, stream=True)
    deadline = time.monotonic() + 5
    while server.events_sent == 0 and not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(server.requests) == 1  # it was started ...
    assert server.events_sent <= 1  # ... but its stream was closed, not read


def test_sync_optimistic_refusal_releases_only_the_refusal():
    server = FakeOpenAI("Knead and bake.")
    guard = Guard([builtin_policy("dangerous", action="rewrite")], scorer=KeywordScorer({"kill": 0.99}))
    client = GuardedOpenAI(server.client(), guard, optimistic=True)
    chunks = list(client.chat.completions.create(model="m", messages=BAD_USER, stream=True))
    assert [c.choices[0].delta.content for c in chunks] == [guard.refusal]


async def test_async_optimistic_blocked_input_cancels_the_call():
    server = FakeOpenAI("Knead and bake.", delay=1.0)
    release = asyncio.Event()

    class SlowScorer:
        def score(self, requests):
            return [0.99 for _ in requests]

        async def ascore(self, requests):
            await asyncio.sleep(0.05)  # the OpenAI call is in flight meanwhile
            release.set()
            return [0.99 for _ in requests]

    client = AsyncGuardedOpenAI(server.async_client(), Guard(["dangerous"], scorer=SlowScorer()), optimistic=True)
    started = time.monotonic()
    with pytest.raises(Blocked):
        await client.chat.completions.create(model="m", messages=BAD_USER)
    assert release.is_set()
    assert time.monotonic() - started < 0.9  # did not wait for the slow reply
    assert server.cancelled == 1


async def test_async_optimistic_passes_and_streams_after_the_check():
    order: list[str] = []

    class Scorer:
        def score(self, requests):
            return [0.0 for _ in requests]

        async def ascore(self, requests):
            if requests[0].turn.response is None:
                await asyncio.sleep(0.05)
                order.append("input checked")
            return [0.0 for _ in requests]

    server = FakeOpenAI(lambda body: order.append("called") or "Knead and bake.")
    client = AsyncGuardedOpenAI(server.async_client(), Guard(["dangerous"], scorer=Scorer()), optimistic=True)
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    order.append("stream returned")
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Knead and bake."
    assert order == ["called", "input checked", "stream returned"]


def test_optimistic_calls_leave_no_thread_behind():
    """One daemon thread per optimistic call (the kernel's rule for every adapter, with the
    caller's context vars), ended when the call returns: no pool lives on in the client."""
    server = FakeOpenAI("ok")
    client = GuardedOpenAI(server.client(), Guard(["dangerous"], scorer=KeywordScorer({})), optimistic=True)
    for _ in range(3):
        assert client.responses.create(model="m", input="hello").output_text == "ok"
    deadline = time.monotonic() + 5
    while any(t.name == "guardrail-optimistic" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not [t for t in threading.enumerate() if t.name.startswith(("guardrail-optimistic", "guardrail-openai"))]
