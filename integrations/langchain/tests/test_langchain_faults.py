"""Fault injection through the LangChain adapters: under fail-closed, nothing unchecked gets out.

`GuardedChatModel` and `guard_runnable` over a scripted chat model, invoke and stream, sync
and async, with the scorer raising, hanging or returning garbage, and with the remote scorer's
server failing (see `tests/test_faults.py` for the cases and the tally).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from faults import (
    SCORER_FAULTS,
    Case,
    FaultyScorer,
    Tally,
    cases,
    guards,
    released,
    remote_plan,
)
from completions_server import SERVER_FAULTS, CompletionsServer, table_answer

from guardrail import Guard
from guardrail import RemoteScorer
from guardrail_langchain import GuardedChatModel, guard_runnable
from guardrail_langchain.testing import ScriptedChatModel

PATHS = ("chat.invoke", "chat.ainvoke", "chat.stream", "chat.astream", "runnable.invoke", "runnable.astream")


def _text(message: Any) -> str:
    return message.content if isinstance(message.content, str) else message.text


async def call(tally: Tally, guard: Guard, case: Case, path: str) -> None:
    inner = ScriptedChatModel(responses=[case.answer])
    model = GuardedChatModel(chat_model=inner, guard=guard) if path.startswith("chat") else guard_runnable(inner, guard)
    how = path.split(".")[1]
    if how == "invoke":
        tally.run(case, lambda: released(_text(model.invoke(case.prompt))))
    elif how == "ainvoke":
        async def ainvoke() -> str:
            return released(_text(await model.ainvoke(case.prompt)))
        await tally.arun(case, ainvoke)
    elif how == "stream":
        tally.run(case, lambda: released("".join(_text(c) for c in model.stream(case.prompt))))
    else:
        async def astream() -> str:
            return released("".join([_text(c) async for c in model.astream(case.prompt)]))
        await tally.arun(case, astream)


async def drive(tally: Tally, guard_set: list[Guard], plan: Any, calls: list[Case]) -> None:
    for n, case in enumerate(calls):
        plan(case)
        await call(tally, guard_set[(n + n // 8) % len(guard_set)], case, PATHS[n % len(PATHS)])


@pytest.fixture
def faulty() -> Iterator[FaultyScorer]:
    scorer = FaultyScorer()
    yield scorer
    scorer.release.set()


async def test_scorer_faults_through_langchain_leak_nothing(faulty: FaultyScorer) -> None:
    tally = Tally("langchain")
    await drive(tally, guards(faulty), lambda case: setattr(faulty, "case", case), cases(1044))
    tally.check(minimum=1000)
    assert set(tally.faults) == set(SCORER_FAULTS)


async def test_the_leak_detector_sees_langchain_leaks_when_failing_open(faulty: FaultyScorer) -> None:
    tally = Tally("langchain, on_error=allow (control)")
    faults = [c for c in cases(60) if c.faulty and c.fault != "hang"]
    await drive(tally, guards(faulty, on_error="allow"), lambda case: setattr(faulty, "case", case), faults)
    assert tally.leaks > len(faults) // 2


async def test_remote_faults_through_langchain_leak_nothing(gemma3_tokenizer: Any) -> None:  # noqa: ANN001
    tokenizer = gemma3_tokenizer
    tally = Tally("langchain + RemoteScorer")
    with CompletionsServer(table_answer(tokenizer), hang=1.0) as server:
        async with RemoteScorer(server.url, tokenizer=tokenizer, timeout=0.05, retries=1, backoff=0) as remote:
            calls = cases(252, SERVER_FAULTS, ("input", "output"))
            await drive(tally, guards(remote, timeout=None), lambda case: remote_plan(server, case), calls)
    tally.check(minimum=250)
    assert set(tally.faults) == set(SERVER_FAULTS)
