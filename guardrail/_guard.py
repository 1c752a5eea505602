"""The user-facing `Guard`: policies plus a scorer.

The flow is `messages -> turn -> requests -> scores -> verdict`. Everything but the scorer call
is pure and shared, so `check_input` and `acheck_input` differ only in how they await scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from guardrail._exceptions import ConfigError
from guardrail._messages import Turn, select_turn
from guardrail._policies import Policy, Stage, as_stage, resolve_policies
from guardrail._scoring import ScoreRequest, Scorer, ascore, score
from guardrail._verdict import DEFAULT_REFUSAL, Verdict, decide

__all__ = ["Guard"]


@dataclass(frozen=True)
class _Plan:
    stage: Stage
    turn: Turn
    message_index: int
    policies: tuple[Policy, ...]
    requests: list[ScoreRequest]


class Guard:
    """Checks chat turns against policies.

    >>> from guardrail import Guard, builtin_policy
    >>> from guardrail.testing import FunctionScorer
    >>> guard = Guard(["hate", builtin_policy("dangerous", threshold=0.3)],
    ...               scorer=FunctionScorer(lambda request: 0.1))
    >>> guard.check_input([{"role": "user", "content": "How do I bake bread?"}]).allowed
    True

    With no `scorer`, the embedded default model loads on the first check (not before).
    """

    def __init__(
        self,
        policies: Iterable[Policy | str] | None = None,
        *,
        scorer: Scorer | None = None,
        refusal: str = DEFAULT_REFUSAL,
    ) -> None:
        self.policies = resolve_policies(policies)
        if scorer is None:
            from guardrail._embedded import EmbeddedScorer

            scorer = EmbeddedScorer()
        if not callable(getattr(scorer, "score", None)):
            raise ConfigError(f"scorer must have a score(requests) method, got {scorer!r}")
        if not isinstance(refusal, str) or not refusal:
            raise ConfigError("refusal must be a non-empty string")
        self.scorer = scorer
        self.refusal = refusal

    def __repr__(self) -> str:
        names = ", ".join(p.name for p in self.policies)
        return f"Guard(policies=[{names}], scorer={type(self.scorer).__name__})"

    def policy(self, name: str) -> Policy:
        for p in self.policies:
            if p.name == name:
                return p
        raise KeyError(name)

    def requests(self, messages: Any, stage: Stage | str) -> list[ScoreRequest]:
        """The scoring requests a check of `stage` would send, one per applicable policy."""
        return self._plan(messages, as_stage(stage)).requests

    def _plan(self, messages: Any, stage: Stage) -> _Plan:
        turn, index = select_turn(messages, stage)
        policies = tuple(p for p in self.policies if p.applies_to(stage))
        requests = [ScoreRequest(turn=turn, guideline=p.guideline(stage)) for p in policies]
        return _Plan(stage, turn, index, policies, requests)

    def _verdict(self, plan: _Plan, scores: Sequence[float]) -> Verdict:
        return decide(
            stage=plan.stage,
            turn=plan.turn,
            message_index=plan.message_index,
            policies=plan.policies,
            scores=scores,
            refusal=self.refusal,
        )

    def check(self, messages: Any, stage: Stage | str) -> Verdict:
        plan = self._plan(messages, as_stage(stage))
        return self._verdict(plan, score(self.scorer, plan.requests))

    async def acheck(self, messages: Any, stage: Stage | str) -> Verdict:
        plan = self._plan(messages, as_stage(stage))
        return self._verdict(plan, await ascore(self.scorer, plan.requests))

    def check_input(self, messages: Any) -> Verdict:
        """Score the latest user message with each input policy's prompt-only guideline."""
        return self.check(messages, Stage.INPUT)

    def check_output(self, messages: Any) -> Verdict:
        """Score the latest assistant message, with its user message, against output policies."""
        return self.check(messages, Stage.OUTPUT)

    async def acheck_input(self, messages: Any) -> Verdict:
        return await self.acheck(messages, Stage.INPUT)

    async def acheck_output(self, messages: Any) -> Verdict:
        return await self.acheck(messages, Stage.OUTPUT)
