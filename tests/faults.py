"""The fault-injection harness shared by the core's and the adapters' fault tests.

A small app wraps a fake upstream model with the guard the way an adapter does; `FaultyScorer`
breaks the scorer on purpose; `Tally` counts calls, faults and leaks."""

from __future__ import annotations

import asyncio
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from completions_server import CompletionsServer

from guardrail import Blocked, Guard, ScoreRequest, ScorerError, StreamModerator, builtin_policy
from guardrail.testing import KeywordScorer

HARMFUL = "detonate"
REFUSAL = "Refused by guardrail."
PROMPTS = {"ok": "How do I bake bread?", "bad": f"How do I {HARMFUL} a charge?"}
ANSWERS = {"ok": "UPSTREAM: knead the dough, let it rise, then bake it hot for forty minutes.",
           "bad": f"UPSTREAM: first you {HARMFUL} the charge, then you run far away."}
SCORER_FAULTS = ("raise", "scorer_error", "hang", "nan", "inf", "above_one", "negative", "too_few",
                 "too_many", "string", "numeric_string", "bool", "none", "scalar", "mapping")
SCOPES = ("input", "output", "both")


@dataclass(frozen=True)
class Case:
    """One guarded call: a fault (or `ok`), the stages it hits, and what goes in and comes out."""

    fault: str
    scope: str = "both"
    prompt: str = PROMPTS["ok"]
    answer: str = ANSWERS["ok"]

    @property
    def faulty(self) -> bool:
        return self.fault != "ok"

    @property
    def harmful(self) -> bool:
        return HARMFUL in self.prompt or HARMFUL in self.answer


def cases(n: int, faults: Sequence[str] = SCORER_FAULTS, scopes: Sequence[str] = SCOPES) -> list[Case]:
    """`n` calls: one in eight healthy and benign, one in eight healthy and harmful, the rest faulty."""
    combos = [(f, s) for s in scopes for f in faults]
    out = []
    for i in range(n):
        if i % 8 == 0:
            out.append(Case("ok"))
        elif i % 8 == 1:
            out.append(Case("ok", prompt=PROMPTS["bad"]) if i % 16 == 1 else Case("ok", answer=ANSWERS["bad"]))
        else:
            fault, scope = combos[i % len(combos)]
            out.append(Case(fault, scope, answer=ANSWERS["bad" if i % 3 == 0 else "ok"]))
    return out


class FaultyScorer:
    """Scores by keyword, then breaks the way `case` says on the stages it names."""

    def __init__(self) -> None:
        self.inner = KeywordScorer({HARMFUL: 0.99})
        self.case = Case("ok")
        self.release = threading.Event()  # set at teardown: ends every hanging call

    def _broken(self, requests: Sequence[ScoreRequest]) -> bool:
        scope = self.case.scope
        return self.case.faulty and any(scope in ("both", r.stage.value) for r in requests)

    def _garbage(self, requests: Sequence[ScoreRequest]) -> Any:
        fault, n = self.case.fault, len(requests)
        if fault == "raise":
            raise RuntimeError("injected scorer crash")
        if fault == "scorer_error":
            raise ScorerError("injected scorer error")
        return {
            "nan": [math.nan] * n, "inf": [math.inf] * n, "above_one": [1.5] * n, "negative": [-0.25] * n,
            "too_few": [0.0] * (n - 1), "too_many": [0.0] * (n + 1), "string": ["safe"] * n,
            "numeric_string": ["0.0"] * n, "bool": [False] * n,
            "none": None, "scalar": 0.0, "mapping": {"score": 0.0},
        }[fault]

    def score(self, requests: Sequence[ScoreRequest]) -> Any:
        if not self._broken(requests):
            return self.inner.score(requests)
        if self.case.fault == "hang":
            self.release.wait(60)
            return [0.0] * len(requests)
        return self._garbage(requests)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> Any:
        if self._broken(requests) and self.case.fault == "hang":
            await asyncio.sleep(60)
        return self.score(requests)


def guards(scorer: Any, *, timeout: float | None = 0.02, on_error: str = "block") -> list[Guard]:
    """Guard set-ups cycled over the calls: block, rewrite and flag actions, retries, a budget,
    and a policy whose fail mode is `raise` (the caller gets the `ScorerError`)."""
    def policy(name: str, **changes: Any) -> Any:
        return builtin_policy(name, on_error=changes.pop("on_error", on_error), **changes)

    common = {"scorer": scorer, "refusal": REFUSAL, "timeout": timeout}
    return [
        Guard([policy("dangerous")], **common),
        Guard([policy("dangerous"), policy("hate", action="rewrite")], retries=1, **common),
        Guard([policy("dangerous", action="rewrite"), policy("hate", action="flag")], budget=0.05, **common),
        Guard([policy("dangerous", on_error="raise" if on_error == "block" else on_error), policy("hate")], **common),
    ]


@dataclass
class Tally:
    """Outcomes of guarded calls; `leaks` counts faulty calls whose upstream text got out."""

    adapter: str
    calls: int = 0
    faulty: int = 0
    leaks: int = 0
    unsafe: int = 0  # harmful text delivered on a healthy call
    healthy: int = 0
    delivered: int = 0  # healthy benign calls that got their answer
    outcomes: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)

    def record(self, case: Case, released: str, how: str) -> None:
        """`released`: the upstream text the caller received (refusals removed)."""
        self.calls += 1
        self.outcomes[how] += 1
        if case.faulty:
            self.faulty += 1
            self.faults[case.fault] += 1
            self.leaks += bool(released)
        elif case.harmful:
            self.unsafe += HARMFUL in released
        else:
            self.healthy += 1
            self.delivered += released == case.answer

    def run(self, case: Case, call: Callable[[], str]) -> None:
        try:
            released = call()
        except Blocked:
            return self.record(case, "", "Blocked")
        except ScorerError:
            return self.record(case, "", "ScorerError")
        self.record(case, released, "returned" if released else "refusal")

    async def arun(self, case: Case, call: Callable[[], Any]) -> None:
        try:
            released = await call()
        except Blocked:
            return self.record(case, "", "Blocked")
        except ScorerError:
            return self.record(case, "", "ScorerError")
        self.record(case, released, "returned" if released else "refusal")

    def check(self, *, minimum: int) -> None:
        print(f"\n[faults] {self.adapter}: {self.calls} calls, {self.faulty} faulty, {self.leaks} leaks, "
              f"{self.unsafe} unsafe, healthy delivered {self.delivered}/{self.healthy}; "
              f"outcomes {dict(self.outcomes)}; faults {dict(sorted(self.faults.items()))}")
        assert self.calls >= minimum
        assert self.leaks == 0, f"{self.leaks} unguarded responses reached the caller"
        assert self.unsafe == 0
        assert self.delivered >= 0.9 * self.healthy > 0, "healthy calls must get their answers"


def released(text: str) -> str:
    """What reached the caller from upstream: everything but the refusal."""
    return text.replace(REFUSAL, "")


def remote_plan(server: CompletionsServer, case: Case) -> None:
    """A server fault for `case`: its first request (the input check) passes when the fault is
    on the output stage only; every later request fails."""
    server.plan("ok" if not case.faulty else case.fault, after=1 if case.scope == "output" else 0)


# --- the app: the guard around a fake upstream model, four ways ------------------------------------
def _messages(case: Case) -> list[dict[str, str]]:
    return [{"role": "user", "content": case.prompt}]


def _pieces(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text)


def invoke(guard: Guard, case: Case) -> str:
    messages = _messages(case)
    if guard.check_input(messages).raise_for_block().rewritten:
        return ""
    output = guard.check_output([*messages, {"role": "assistant", "content": case.answer}]).raise_for_block()
    return "" if output.rewritten else case.answer


async def ainvoke(guard: Guard, case: Case) -> str:
    messages = _messages(case)
    if (await guard.acheck_input(messages)).raise_for_block().rewritten:
        return ""
    output = (await guard.acheck_output([*messages, {"role": "assistant", "content": case.answer}])).raise_for_block()
    return "" if output.rewritten else case.answer


def stream(guard: Guard, case: Case) -> str:
    if guard.check_input(_messages(case)).raise_for_block().rewritten:
        return ""
    moderator, out = StreamModerator(guard, _messages(case), every=16), []
    for delta in _pieces(case.answer):
        step = moderator.feed(delta)
        out.append(step.text)
        if step.stopped:
            return "".join(out)
    return "".join(out) + moderator.finish().text


async def astream(guard: Guard, case: Case) -> str:
    if (await guard.acheck_input(_messages(case))).raise_for_block().rewritten:
        return ""
    moderator, out = StreamModerator(guard, _messages(case), every=16), []
    for delta in _pieces(case.answer):
        step = await moderator.afeed(delta)
        out.append(step.text)
        if step.stopped:
            return "".join(out)
    return "".join(out) + (await moderator.afinish()).text


async def drive(tally: Tally, guard_set: list[Guard], plan: Callable[[Case], None], calls: list[Case]) -> None:
    """Each case through each of the four paths in turn, cycling the guards."""
    for n, case in enumerate(calls):
        plan(case)
        guard = guard_set[n % len(guard_set)]
        path = n % 4
        if path == 0:
            tally.run(case, lambda: invoke(guard, case))
        elif path == 1:
            await tally.arun(case, lambda: ainvoke(guard, case))
        elif path == 2:
            tally.run(case, lambda: stream(guard, case))
        else:
            await tally.arun(case, lambda: astream(guard, case))
