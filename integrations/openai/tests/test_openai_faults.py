"""Fault injection through the OpenAI wrappers: under fail-closed, nothing unchecked gets out.

`GuardedOpenAI` and `AsyncGuardedOpenAI` over the fake OpenAI server (real HTTP bodies and SSE),
chat completions and responses, plain and streamed, `on_block="raise"` and `"refuse"`, with
the scorer raising, hanging or returning garbage, and with the remote scorer's server failing
(see `tests/test_faults.py` for the cases and the tally).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from faults import SCORER_FAULTS, Case, FaultyScorer, Tally, cases, guards, released, remote_plan
from completions_server import SERVER_FAULTS, CompletionsServer, table_answer

from guardrail import Guard
from guardrail import RemoteScorer
from guardrail_openai import AsyncGuardedOpenAI, GuardedOpenAI
from guardrail_openai.testing import FakeOpenAI

PATHS = [(api, kind, streamed) for api in ("chat", "responses") for kind in ("sync", "async") for streamed in (False, True)]


def text_of(result: Any) -> str:
    """The text a caller reads from a result or from the items of a stream."""
    if isinstance(result, ChatCompletion):
        return "".join(c.message.content or "" for c in result.choices)
    if isinstance(result, list):
        out = []
        for item in result:
            if isinstance(item, ChatCompletionChunk):
                out += [c.delta.content or "" for c in item.choices]
            elif item.type == "response.output_text.delta":
                out.append(item.delta)
        return "".join(out)
    return result.output_text


class Clients:
    """One fake server, and guarded sync and async clients per guard and `on_block`."""

    def __init__(self, guard_set: list[Guard]) -> None:
        self.case = Case("ok")
        self.server = FakeOpenAI(lambda body: self.case.answer)
        self.sync = [GuardedOpenAI(self.server.client(), g, on_block=b) for g in guard_set for b in ("raise", "refuse")]
        self.aio = [AsyncGuardedOpenAI(self.server.async_client(), g, on_block=b)
                    for g in guard_set for b in ("raise", "refuse")]

    async def call(self, tally: Tally, n: int) -> None:
        case, (api, kind, streamed) = self.case, PATHS[n % len(PATHS)]
        messages = [{"role": "user", "content": case.prompt}]
        client = (self.sync if kind == "sync" else self.aio)[(n + n // 8) % len(self.sync)]
        create = client.chat.completions.create if api == "chat" else client.responses.create
        args = {"model": "m", "stream": streamed, **({"messages": messages} if api == "chat" else {"input": messages})}
        if kind == "sync":
            def run() -> str:
                result = create(**args)
                if streamed:
                    with result:
                        result = list(result)
                return released(text_of(result))
            return tally.run(case, run)

        async def arun() -> str:
            result = await create(**args)
            if streamed:
                async with result:
                    result = [item async for item in result]
            return released(text_of(result))
        await tally.arun(case, arun)

    async def close(self) -> None:
        for client in self.sync:
            client.unguarded.close()
        for aclient in self.aio:
            await aclient.unguarded.close()


async def drive(tally: Tally, guard_set: list[Guard], plan: Any, calls: list[Case]) -> None:
    clients = Clients(guard_set)
    try:
        for n, case in enumerate(calls):
            plan(case)
            clients.case = case
            await clients.call(tally, n)
    finally:
        await clients.close()


@pytest.fixture
def faulty() -> Iterator[FaultyScorer]:
    scorer = FaultyScorer()
    yield scorer
    scorer.release.set()


async def test_scorer_faults_through_openai_leak_nothing(faulty: FaultyScorer) -> None:
    tally = Tally("openai")
    await drive(tally, guards(faulty), lambda case: setattr(faulty, "case", case), cases(1040))
    tally.check(minimum=1000)
    assert set(tally.faults) == set(SCORER_FAULTS)
    assert {"Blocked", "ScorerError", "refusal"} <= set(tally.outcomes)


async def test_the_leak_detector_sees_openai_leaks_when_failing_open(faulty: FaultyScorer) -> None:
    tally = Tally("openai, on_error=allow (control)")
    faults = [c for c in cases(60) if c.faulty and c.fault != "hang"]
    await drive(tally, guards(faulty, on_error="allow"), lambda case: setattr(faulty, "case", case), faults)
    assert tally.leaks > len(faults) // 2


async def test_remote_faults_through_openai_leak_nothing(gemma3_tokenizer: Any) -> None:  # noqa: ANN001
    tokenizer = gemma3_tokenizer
    tally = Tally("openai + RemoteScorer")
    with CompletionsServer(table_answer(tokenizer), hang=1.0) as server:
        async with RemoteScorer(server.url, tokenizer=tokenizer, timeout=0.05, retries=1, backoff=0) as remote:
            calls = cases(256, SERVER_FAULTS, ("input", "output"))
            await drive(tally, guards(remote, timeout=None), lambda case: remote_plan(server, case), calls)
    tally.check(minimum=250)
    assert set(tally.faults) == set(SERVER_FAULTS)
