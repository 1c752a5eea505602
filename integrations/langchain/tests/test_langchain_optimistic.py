"""Optimistic input checking: generation runs beside the check; nothing is released before it.

Timings use short sleeps (a slow fake scorer, a slow fake model) with wide margins: the
machine is shared, so the bounds only separate "max(check, gen)" from "check + gen".
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from guardrail import Blocked, Guard
from guardrail.testing import KeywordScorer

from guardrail_langchain import GuardedChatModel, GuardedRunnable
from guardrail_langchain.testing import ScriptedChatModel, SlowScorer

DELAY = 0.4


def setup(optimistic: bool, *, model_delay: float = DELAY, check_delay: float = DELAY) -> tuple[GuardedRunnable, ScriptedChatModel]:
    model = ScriptedChatModel(responses=["Knead the dough."], delay=model_delay)
    guard = Guard(["dangerous"], scorer=SlowScorer(KeywordScorer({"kill": 0.99}), delay=check_delay))
    # The output check is off so the timing isolates the input check against generation.
    return GuardedRunnable(model, guard, optimistic=optimistic, check_output=False), model


def timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


@pytest.mark.parametrize("is_async", [False, True])
def test_latency_is_the_max_of_check_and_generation(is_async: bool) -> None:
    def call(guarded: GuardedRunnable) -> Any:
        return asyncio.run(guarded.ainvoke("bread?")) if is_async else guarded.invoke("bread?")

    sequential, t_seq = timed(lambda: call(setup(False)[0]))
    optimistic, t_opt = timed(lambda: call(setup(True)[0]))
    assert sequential.content == optimistic.content == "Knead the dough."
    assert t_seq >= 2 * DELAY
    assert t_opt < 1.6 * DELAY, f"optimistic took {t_opt:.2f}s, sequential {t_seq:.2f}s"


def test_async_block_cancels_generation() -> None:
    guarded, model = setup(True, model_delay=1.0, check_delay=0.1)

    async def go() -> float:
        start = time.perf_counter()
        with pytest.raises(Blocked):
            await guarded.ainvoke("how to kill")
        elapsed = time.perf_counter() - start
        await asyncio.sleep(1.1)  # long enough for an uncancelled generation to finish
        return elapsed

    elapsed = asyncio.run(go())
    assert elapsed < 0.8
    assert model.calls == 0 and model.finished == 0  # cancelled while it waited


def test_sync_block_returns_at_once_and_discards_generation() -> None:
    guarded, model = setup(True, model_delay=1.0, check_delay=0.1)
    start = time.perf_counter()
    with pytest.raises(Blocked):
        guarded.invoke("how to kill")
    assert time.perf_counter() - start < 0.8  # did not wait for the 1 s generation


@pytest.mark.parametrize("is_async", [False, True])
def test_optimistic_stream_releases_nothing_before_the_check(is_async: bool) -> None:
    model = ScriptedChatModel(responses=["one two three"], delay=0.05)
    guard = Guard(["dangerous"], scorer=SlowScorer(KeywordScorer({"kill": 0.99}), delay=DELAY))
    guarded = GuardedChatModel(chat_model=model, guard=guard, optimistic=True, every=4)
    # The scorer is slow for output checks too; time the first chunk only.

    async def first_async(text: str) -> tuple[Any, float]:
        start = time.perf_counter()
        async for chunk in guarded.astream(text):
            return chunk, time.perf_counter() - start
        raise AssertionError("no chunk")

    def first_sync(text: str) -> tuple[Any, float]:
        start = time.perf_counter()
        for chunk in guarded.stream(text):
            return chunk, time.perf_counter() - start
        raise AssertionError("no chunk")

    first = (lambda t: asyncio.run(first_async(t))) if is_async else first_sync
    chunk, elapsed = first("bread?")
    assert elapsed >= DELAY and chunk.content  # held until the input check had passed
    assert model.calls == 1
    with pytest.raises(Blocked, match="input"):
        first("how to kill")


def test_optimistic_async_stream_block_cancels_the_stream() -> None:
    model = ScriptedChatModel(responses=["one two three"], delay=1.0)
    guard = Guard(["dangerous"], scorer=SlowScorer(KeywordScorer({"kill": 0.99}), delay=0.1))
    guarded = GuardedChatModel(chat_model=model, guard=guard, optimistic=True)

    async def go() -> list[Any]:
        got = []
        with pytest.raises(Blocked):
            async for chunk in guarded.astream("how to kill"):
                got.append(chunk)
        await asyncio.sleep(1.1)
        return got

    assert asyncio.run(go()) == []
    assert model.pulled == 0 and model.finished == 0
