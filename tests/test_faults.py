"""Fault injection through the Guard itself: under fail-closed, nothing unchecked gets out.

A small app wraps a fake upstream model with the guard the way an adapter does (input check,
the model, output check; or streamed through `StreamModerator`), sync and async. Each call
gets a fault: the scorer raises, hangs past the guard's timeout, or returns garbage, on the
input stage, the output stage or both; or the remote scorer's server fails (5xx, hangs,
dropped connections, malformed JSON, missing log-probabilities). Some calls are healthy, so
the harness must also let good content through. A leak is any upstream text reaching the
caller on a faulty call. The harness (tests/faults.py) is shared with the adapters' fault tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from completions_server import SERVER_FAULTS, CompletionsServer, table_answer
from faults import HARMFUL, PROMPTS, SCORER_FAULTS, FaultyScorer, Tally, cases, drive, guards, remote_plan

from guardrail import Guard
from guardrail._remote import RemoteScorer


@pytest.fixture
def faulty() -> Iterator[FaultyScorer]:
    scorer = FaultyScorer()
    yield scorer
    scorer.release.set()


async def test_scorer_faults_through_the_guard_leak_nothing(faulty: FaultyScorer) -> None:
    tally = Tally("guard")
    await drive(tally, guards(faulty), lambda case: setattr(faulty, "case", case), cases(1040))
    tally.check(minimum=1000)
    assert set(tally.faults) == set(SCORER_FAULTS)
    assert {"Blocked", "ScorerError", "refusal"} <= set(tally.outcomes)


async def test_the_leak_detector_sees_leaks_when_failing_open(faulty: FaultyScorer) -> None:
    tally = Tally("guard, on_error=allow (control)")
    faults = [c for c in cases(96) if c.faulty]
    await drive(tally, guards(faulty, on_error="allow"), lambda case: setattr(faulty, "case", case), faults)
    assert tally.leaks > len(faults) // 2, "failing open lets upstream text out, and the tally must see it"


@pytest.fixture(scope="module")
def fault_server(gemma3_tokenizer: Any) -> Iterator[CompletionsServer]:  # noqa: ANN001
    with CompletionsServer(table_answer(gemma3_tokenizer, harmful=HARMFUL), hang=1.0) as server:
        yield server


async def test_remote_faults_through_the_guard_leak_nothing(fault_server: CompletionsServer, gemma3_tokenizer: Any) -> None:  # noqa: ANN001
    tally = Tally("guard + RemoteScorer")
    async with RemoteScorer(fault_server.url, tokenizer=gemma3_tokenizer, timeout=0.05, retries=1, backoff=0) as remote:
        calls = cases(320, SERVER_FAULTS, ("input", "output"))
        await drive(tally, guards(remote, timeout=None), lambda case: remote_plan(fault_server, case), calls)
    tally.check(minimum=300)
    assert set(tally.faults) == set(SERVER_FAULTS)


@pytest.mark.parametrize("garbage", ["0.0", False, b"0", None])
def test_numeric_strings_and_bools_are_not_scores(garbage: Any) -> None:
    """A low-looking value of the wrong type must fail closed, not pass as P(Yes) = 0."""
    from guardrail.testing import FunctionScorer

    verdict = Guard(["dangerous"], scorer=FunctionScorer(lambda r: garbage)).check_input(PROMPTS["bad"])
    assert verdict.blocked and verdict.errors
