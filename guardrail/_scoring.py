"""The scorer contract: a batch of requests in, P(Yes) per request out, in order.

A scorer is the only part of guardrail that touches a model. It knows nothing of thresholds or
actions; those live in policies, so one loaded model serves every policy. Each request says which
turn and which guideline it scores, so a backend can share work between requests on one turn.

A scorer that loads its model lazily may also have `load()` (and `aload()`): idempotent and
thread-safe. The guard calls it before a check's timed attempt, so loading never counts against
`timeout` or `budget`.
"""

from __future__ import annotations

import asyncio
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from guardrail._exceptions import GuardrailError, ScorerError
from guardrail._messages import Turn
from guardrail._policies import Stage
from guardrail._prompts import render_prompt

__all__ = [
    "AsyncScorer",
    "ScoreRequest",
    "Scorer",
    "aload_scorer",
    "ascore",
    "ascore_raw",
    "load_scorer",
    "score",
]


@dataclass(frozen=True, kw_only=True)
class ScoreRequest:
    """One (turn, guideline) pair to score; `policy` names where the guideline came from."""

    turn: Turn
    guideline: str
    policy: str = ""

    @property
    def stage(self) -> Stage:
        return self.turn.stage

    @property
    def prompt(self) -> str:
        """The exact ShieldGemma prompt text, without `<bos>`."""
        return render_prompt(self.turn, self.guideline)


@runtime_checkable
class Scorer(Protocol):
    """Anything with `score(requests) -> list[float]` of P(Yes) values in [0, 1]."""

    def score(self, requests: Sequence[ScoreRequest], /) -> list[float]: ...


@runtime_checkable
class AsyncScorer(Protocol):
    """A scorer with a native async path. Scorers without one run `score` in a worker thread."""

    async def ascore(self, requests: Sequence[ScoreRequest], /) -> list[float]: ...


def _checked(scores: object, expected: int) -> list[float]:
    try:
        raw = list(scores)  # type: ignore[call-overload]
    except TypeError as exc:
        raise ScorerError(f"scorer returned non-numeric scores: {exc}") from exc
    bad = [s for s in raw if isinstance(s, bool) or not isinstance(s, numbers.Real)]
    if bad:  # "0.9" or True is a bug in the scorer, not a probability
        raise ScorerError(f"scorer returned non-numeric scores: {bad[0]!r}")
    values = [float(s) for s in raw]
    if len(values) != expected:
        raise ScorerError(f"scorer returned {len(values)} scores for {expected} requests")
    for n, value in enumerate(values):
        if math.isnan(value) or not 0.0 <= value <= 1.0:
            raise ScorerError(f"scorer returned {value!r} for request {n}; P(Yes) must be in [0, 1]")
    return values


def load_scorer(scorer: Scorer) -> None:
    """Call the scorer's `load()` if it has one; failures other than ours become `ScorerError`."""
    load = getattr(scorer, "load", None)
    if load is None:
        return
    try:
        load()
    except GuardrailError:
        raise
    except Exception as exc:
        raise ScorerError(f"{type(scorer).__name__} failed to load: {exc!r}") from exc


async def aload_scorer(scorer: Scorer) -> None:
    """The async twin of `load_scorer`: native `aload()`, else `load()` in a worker thread."""
    native = getattr(scorer, "aload", None)
    if native is None and getattr(scorer, "load", None) is None:
        return
    try:
        await (native() if native is not None else asyncio.to_thread(scorer.load))  # type: ignore[attr-defined]
    except GuardrailError:
        raise
    except Exception as exc:
        raise ScorerError(f"{type(scorer).__name__} failed to load: {exc!r}") from exc


def score(scorer: Scorer, requests: Sequence[ScoreRequest]) -> list[float]:
    """Call `scorer` and validate what it returns; any failure becomes a `ScorerError`."""
    if not requests:
        return []
    try:
        raw = scorer.score(requests)
    except GuardrailError:
        raise
    except Exception as exc:
        raise ScorerError(f"{type(scorer).__name__} failed: {exc!r}") from exc
    return _checked(raw, len(requests))


async def ascore_raw(scorer: Scorer, requests: Sequence[ScoreRequest]) -> object:
    """The one rule for scoring from async code: the scorer's native `ascore` when it has one,
    else its `score` in a worker thread. Unchecked: wrappers pass the result on as it came."""
    native = getattr(scorer, "ascore", None)
    if native is not None:
        return await native(requests)
    return await asyncio.to_thread(scorer.score, requests)


async def ascore(scorer: Scorer, requests: Sequence[ScoreRequest]) -> list[float]:
    """The async twin of `score`: native `ascore` when the scorer has one, else a worker thread."""
    if not requests:
        return []
    try:
        raw = await ascore_raw(scorer, requests)
    except GuardrailError:
        raise
    except Exception as exc:
        raise ScorerError(f"{type(scorer).__name__} failed: {exc!r}") from exc
    return _checked(raw, len(requests))
