"""Tracing: OpenTelemetry spans for every check.

OpenTelemetry is not a dependency: it is imported when an observer or wrapper is built, and a
`ConfigError` says what to install when it is missing. (LangChain callback events are
`guardrail_langchain.langchain_events()`.)

>>> from guardrail import Guard
>>> guard = Guard(["hate"], scorer=TracedScorer(scorer), observers=[otel_observer()])  # doctest: +SKIP

- `otel_observer()` ends a `guardrail.check` span per verdict, child of the caller's current
  span, with the outcome, per-policy scores and one `guardrail.decision` event per decision.
  Its status is ERROR when a fail mode decided (the scorer failed).
- `TracedScorer(scorer)` wraps each scorer call in a `guardrail.score` span, so traces show
  the model's latency (a timeout or exception is recorded on the span).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any

from guardrail._audit import content_hash
from guardrail._exceptions import ConfigError
from guardrail._scoring import ScoreRequest, Scorer, aload_scorer, ascore_raw, load_scorer
from guardrail._verdict import Verdict

__all__ = ["TracedScorer", "otel_observer"]

_INSTRUMENTATION = "guardrail"


def _otel_trace() -> Any:
    try:
        from opentelemetry import trace
    except ImportError:
        raise ConfigError(
            "OpenTelemetry tracing needs the opentelemetry-api package (and an SDK to export "
            "spans): pip install opentelemetry-sdk"
        ) from None
    return trace


def _tracer(tracer_provider: Any) -> Any:
    trace = _otel_trace()
    return trace.get_tracer(_INSTRUMENTATION, tracer_provider=tracer_provider)


def _decision_attributes(verdict: Verdict) -> list[dict[str, Any]]:
    events = []
    for d in verdict.decisions:
        attributes: dict[str, Any] = {
            "guardrail.policy": d.policy,
            "guardrail.threshold": d.threshold,
            "guardrail.action": d.action.value,
            "guardrail.triggered": d.triggered,
        }
        if not math.isnan(d.score):
            attributes["guardrail.score"] = d.score
        if d.error is not None:
            attributes["guardrail.error"] = d.error
            attributes["guardrail.fail_mode"] = d.fail_mode.value if d.fail_mode else ""
        events.append(attributes)
    return events


def otel_observer(
    *,
    tracer_provider: Any = None,
    include_content: bool = False,
    key: bytes | None = None,
    span_name: str = "guardrail.check",
) -> Callable[[Verdict], None]:
    """An observer that records each verdict as an OpenTelemetry span.

    >>> guard = Guard(observers=[otel_observer()])   # the global tracer provider  # doctest: +SKIP

    Span attributes: `guardrail.stage`, `guardrail.outcome`, `guardrail.allowed`,
    `guardrail.message_index`, `guardrail.content_sha256`, `guardrail.policies`,
    `guardrail.triggered` (policy names), `guardrail.score.<policy>` for each scored policy;
    `guardrail.prompt` and `guardrail.response` only with `include_content=True`.
    """
    trace = _otel_trace()
    tracer = _tracer(tracer_provider)

    def observe(verdict: Verdict) -> None:
        attributes: dict[str, Any] = {
            "guardrail.stage": verdict.stage.value,
            "guardrail.outcome": verdict.outcome.value,
            "guardrail.allowed": verdict.allowed,
            "guardrail.message_index": verdict.message_index,
            "guardrail.content_sha256": content_hash(verdict.turn, key=key),
            "guardrail.policies": [d.policy for d in verdict.decisions],
            "guardrail.triggered": [d.policy for d in verdict.triggered],
        }
        for d in verdict.decisions:
            if not math.isnan(d.score):
                attributes[f"guardrail.score.{d.policy}"] = d.score
        if include_content:
            attributes["guardrail.prompt"] = verdict.turn.prompt
            if verdict.turn.response is not None:
                attributes["guardrail.response"] = verdict.turn.response
        span = tracer.start_span(span_name, attributes=attributes)
        try:
            for event in _decision_attributes(verdict):
                span.add_event("guardrail.decision", attributes=event)
            if verdict.errors:
                span.set_status(trace.Status(trace.StatusCode.ERROR, verdict.errors[0].error))
        finally:
            span.end()

    return observe


class TracedScorer:
    """Wraps a scorer so each call is a `guardrail.score` span (batch size, policies, stage).

    >>> guard = Guard(scorer=TracedScorer(EmbeddedScorer()))               # doctest: +SKIP
    """

    def __init__(self, inner: Scorer, *, tracer_provider: Any = None) -> None:
        if not callable(getattr(inner, "score", None)):
            raise ConfigError(f"TracedScorer needs a scorer with score(requests), got {inner!r}")
        self.inner = inner
        self._tracer = _tracer(tracer_provider)

    def __repr__(self) -> str:
        return f"TracedScorer({self.inner!r})"

    def _span(self, requests: Sequence[ScoreRequest]) -> Any:
        attributes = {
            "guardrail.scorer": type(self.inner).__name__,
            "guardrail.requests": len(requests),
            "guardrail.policies": sorted({r.policy for r in requests if r.policy}),
            "guardrail.stages": sorted({r.stage.value for r in requests}),
        }
        return self._tracer.start_as_current_span("guardrail.score", attributes=attributes)

    def load(self) -> None:
        load_scorer(self.inner)

    async def aload(self) -> None:
        await aload_scorer(self.inner)

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        with self._span(requests):
            return self.inner.score(requests)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[float]:
        with self._span(requests) as span:
            try:
                return await ascore_raw(self.inner, requests)  # type: ignore[return-value]
            except asyncio.CancelledError:  # a BaseException: OpenTelemetry would leave it unset
                trace = _otel_trace()
                span.set_status(trace.Status(trace.StatusCode.ERROR, "cancelled (the check's timeout or budget)"))
                raise
