"""Decisions and verdicts: the values a check returns.

A `Decision` is one policy's reading of one turn. A `Verdict` collects them and says what to do:
`block` beats `rewrite`, which beats `flag`; content with no triggered policy is allowed.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from guardrail._exceptions import Blocked
from guardrail._messages import Turn, message_role
from guardrail._policies import Action, FailMode, Policy, Stage

__all__ = ["DEFAULT_REFUSAL", "Decision", "Outcome", "Verdict", "decide", "failed"]

DEFAULT_REFUSAL = "I can't help with that."


class Outcome(str, enum.Enum):
    ALLOW = "allow"
    FLAG = "flag"
    REWRITE = "rewrite"
    BLOCK = "block"


@dataclass(frozen=True, kw_only=True)
class Decision:
    """One policy's score for one turn. `triggered` when the score reaches the threshold.

    When no score could be had, `error` says why, `score` is NaN, and the policy's fail mode
    decides: `block` makes a triggered `block` decision, `allow` an untriggered one.
    """

    policy: str
    stage: Stage
    score: float
    threshold: float
    action: Action
    error: str | None = None
    fail_mode: FailMode | None = None

    @property
    def triggered(self) -> bool:
        if self.error is not None:
            return self.fail_mode is FailMode.BLOCK
        return self.score >= self.threshold


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """The result of checking one turn against every policy of its stage.

    >>> verdict = guard.check_input("How do I bake bread?")   # doctest: +SKIP
    >>> verdict.allowed, [(d.policy, round(d.score, 3)) for d in verdict.decisions]  # doctest: +SKIP
    (True, [('dangerous', 0.012), ...])
    >>> verdict.raise_for_block()   # returns the verdict, or raises Blocked  # doctest: +SKIP
    """

    stage: Stage
    turn: Turn
    decisions: tuple[Decision, ...]
    message_index: int
    refusal: str = DEFAULT_REFUSAL

    @property
    def outcome(self) -> Outcome:
        actions = {d.action for d in self.decisions if d.triggered}
        for action, outcome in (
            (Action.BLOCK, Outcome.BLOCK),
            (Action.REWRITE, Outcome.REWRITE),
            (Action.FLAG, Outcome.FLAG),
        ):
            if action in actions:
                return outcome
        return Outcome.ALLOW

    @property
    def allowed(self) -> bool:
        """True when the content may pass unchanged (flags allow and annotate)."""
        return self.outcome in (Outcome.ALLOW, Outcome.FLAG)

    @property
    def blocked(self) -> bool:
        return self.outcome is Outcome.BLOCK

    @property
    def rewritten(self) -> bool:
        """True when the content must be replaced by `refusal` (and nothing blocked it)."""
        return self.outcome is Outcome.REWRITE

    @property
    def triggered(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.triggered)

    @property
    def blocking(self) -> tuple[Decision, ...]:
        """The triggered decisions that stop the content as it is (block or rewrite)."""
        return tuple(d for d in self.triggered if d.action is not Action.FLAG)

    @property
    def errors(self) -> tuple[Decision, ...]:
        """Decisions taken by a fail mode because the scorer failed."""
        return tuple(d for d in self.decisions if d.error is not None)

    @property
    def flags(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.triggered if d.action is Action.FLAG)

    def raise_for_block(self) -> Verdict:
        """Raise `Blocked` if a `block` policy triggered; otherwise return this verdict."""
        if self.blocked:
            raise Blocked(self)
        return self

    def apply(self, messages: Sequence[Any]) -> list[Any]:
        """The messages as they may go on: unchanged, or with the checked message rewritten.

        Raises `Blocked` when the verdict blocks. A rewritten message becomes an OpenAI-shaped
        dict with the same role and the refusal as its content.
        """
        self.raise_for_block()
        items = [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)
        if self.rewritten:
            original = items[self.message_index]
            role = message_role(original, self.message_index)
            items[self.message_index] = {"role": role, "content": self.refusal}
        return items

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: a score that could not be had is `None`, with its `error`."""
        return {
            "stage": self.stage.value,
            "outcome": self.outcome.value,
            "allowed": self.allowed,
            "decisions": [
                {
                    "policy": d.policy,
                    "score": None if math.isnan(d.score) else d.score,
                    "threshold": d.threshold,
                    "action": d.action.value,
                    "triggered": d.triggered,
                    **({"error": d.error} if d.error is not None else {}),
                }
                for d in self.decisions
            ],
        }


def failed(
    *,
    stage: Stage,
    turn: Turn,
    message_index: int,
    policies: Sequence[Policy],
    error: str,
    refusal: str = DEFAULT_REFUSAL,
) -> Verdict:
    """The verdict when no scores could be had: each policy's fail mode decides (pure)."""
    decisions = tuple(
        Decision(
            policy=p.name,
            stage=stage,
            score=float("nan"),
            threshold=p.threshold_for(stage),
            action=Action.BLOCK if p.on_error is FailMode.BLOCK else p.action,
            error=error,
            fail_mode=p.on_error,
        )
        for p in policies
    )
    return Verdict(stage=stage, turn=turn, decisions=decisions, message_index=message_index, refusal=refusal)


def decide(
    *,
    stage: Stage,
    turn: Turn,
    message_index: int,
    policies: Sequence[Policy],
    scores: Sequence[float],
    refusal: str = DEFAULT_REFUSAL,
) -> Verdict:
    """Pair each policy with its score. Pure: no model, no I/O."""
    decisions = tuple(
        Decision(policy=p.name, stage=stage, score=s, threshold=p.threshold_for(stage), action=p.action)
        for p, s in zip(policies, scores, strict=True)
    )
    return Verdict(
        stage=stage, turn=turn, decisions=decisions, message_index=message_index, refusal=refusal
    )
