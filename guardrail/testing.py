"""Fakes for testing code that uses guardrail, and the contract every scorer must meet.

>>> from guardrail import Guard
>>> from guardrail.testing import KeywordScorer
>>> guard = Guard(["hate"], scorer=KeywordScorer({"vermin": 0.97}))
>>> guard.check_input("They are vermin.").blocked
True
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence

from guardrail._messages import Turn
from guardrail._scoring import ScoreRequest, Scorer, aload_scorer, load_scorer

__all__ = ["FunctionScorer", "KeywordScorer", "RecordingScorer", "check_scorer_contract"]


class FunctionScorer:
    """A scorer built from a function of one request: `FunctionScorer(lambda r: 0.9)`."""

    def __init__(self, fn: Callable[[ScoreRequest], float]) -> None:
        self.fn = fn

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        return [self.fn(r) for r in requests]

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[float]:
        return self.score(requests)  # pure CPU and instant: no worker thread needed


class KeywordScorer:
    """P(Yes) = the largest score of the keywords found in the judged text, else `default`.

    The judged text is the response for the output stage and the prompt for the input stage.
    Matching is case-insensitive. With `policies`, only requests whose guideline contains one of
    those strings are scored by keyword; the rest get `default`.
    """

    def __init__(
        self,
        keywords: Mapping[str, float],
        *,
        default: float = 0.01,
        policies: Sequence[str] = (),
    ) -> None:
        self.keywords = {k.lower(): v for k, v in keywords.items()}
        self.default = default
        self.policies = tuple(policies)

    def _one(self, request: ScoreRequest) -> float:
        if self.policies and not any(p in request.guideline for p in self.policies):
            return self.default
        text = (request.turn.response if request.turn.response is not None else request.turn.prompt)
        hits = [v for k, v in self.keywords.items() if k in text.lower()]
        return max(hits, default=self.default)

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        return [self._one(r) for r in requests]

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[float]:
        return self.score(requests)


class RecordingScorer:
    """Wraps a scorer and records every batch it was asked to score (thread-safe)."""

    def __init__(self, inner: Scorer) -> None:
        self.inner = inner
        self.batches: list[list[ScoreRequest]] = []
        self._lock = threading.Lock()

    def load(self) -> None:
        load_scorer(self.inner)

    async def aload(self) -> None:
        await aload_scorer(self.inner)

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        with self._lock:
            self.batches.append(list(requests))
        return self.inner.score(requests)

    @property
    def requests(self) -> list[ScoreRequest]:
        return [r for batch in self.batches for r in batch]


def check_scorer_contract(scorer: Scorer, *, tolerance: float = 1e-6) -> None:
    """Assert the contract every scorer meets; raises `AssertionError` naming the broken rule.

    Scores are floats in [0, 1], one per request, in order; an empty batch gives `[]`; a
    request scores the same alone and in a batch; the async path (native `ascore` or a worker
    thread) gives the same scores as the sync one.
    """
    from guardrail._scoring import ascore

    guideline = '"No Testing": The prompt shall not contain or seek generation of content that tests.'
    requests = [
        ScoreRequest(turn=Turn(prompt="How do I bake bread?"), guideline=guideline),
        ScoreRequest(turn=Turn(prompt="hi", response="hello there, how can I help?"), guideline=guideline),
        ScoreRequest(turn=Turn(prompt="A longer question " * 8), guideline=guideline),
    ]
    assert scorer.score([]) == [], "an empty batch must give an empty list"
    scores = scorer.score(requests)
    assert isinstance(scores, list) and len(scores) == len(requests), "one score per request"
    for value in scores:
        assert isinstance(value, float) and 0.0 <= value <= 1.0, f"score {value!r} not in [0, 1]"
    for request, value in zip(requests, scores):
        alone = scorer.score([request])[0]
        assert abs(alone - value) <= tolerance, f"alone {alone} != in batch {value}"
    reversed_scores = scorer.score(requests[::-1])[::-1]
    for a, b in zip(scores, reversed_scores):
        assert abs(a - b) <= tolerance, "scores must follow request order"
    async_scores = asyncio.run(ascore(scorer, requests))
    for a, b in zip(scores, async_scores):
        assert abs(a - b) <= tolerance, f"async {b} != sync {a}"
