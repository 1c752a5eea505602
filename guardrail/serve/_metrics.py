"""Prometheus metrics of one app, in a registry of its own (two apps in a process don't mix).

    guardrail_checks_total{endpoint,stage,outcome}       served checks; outcome allow|flag|rewrite|block|raised
    guardrail_decisions_total{stage,policy,outcome}      per policy: allow|flag|rewrite|block, or error
                                                         (no score: the policy's fail mode decided)
    guardrail_score{stage,policy}                        histogram of P(Yes) (scored decisions only)
    guardrail_scorer_errors_total{stage}                 checks whose scores could not be had
    guardrail_checks_in_flight                           checks admitted and not finished
    guardrail_scorer_queue_depth                         requests queued in a BatchingScorer (0 if none)
    guardrail_ready                                      1 once the scorer is loaded and warmed up
    guardrail_http_requests_total{route,status}          every HTTP answer, refusals included
    guardrail_http_request_duration_seconds{route}       latency histogram
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from guardrail._verdict import Verdict

__all__ = ["Metrics"]

_SCORE_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The app's counters; `render()` is the `/metrics` body, of type `content_type`."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.checks = Counter("guardrail_checks", "Served checks", ["endpoint", "stage", "outcome"], registry=r)
        self.decisions = Counter("guardrail_decisions", "Policy decisions", ["stage", "policy", "outcome"], registry=r)
        self.scores = Histogram("guardrail_score", "P(Yes) per policy", ["stage", "policy"],
                                buckets=_SCORE_BUCKETS, registry=r)
        self.scorer_errors = Counter("guardrail_scorer_errors", "Checks without scores", ["stage"], registry=r)
        self.in_flight = Gauge("guardrail_checks_in_flight", "Checks admitted and not finished", registry=r)
        self.queue_depth = Gauge("guardrail_scorer_queue_depth", "Requests waiting in the scorer's queue",
                                 registry=r)
        self.ready = Gauge("guardrail_ready", "1 once the scorer is loaded", registry=r)
        self.requests = Counter("guardrail_http_requests", "HTTP answers", ["route", "status"], registry=r)
        self.latency = Histogram("guardrail_http_request_duration_seconds", "Request latency", ["route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)

    def record(self, verdict: Verdict, *, endpoint: str) -> None:
        stage = verdict.stage.value
        self.checks.labels(endpoint, stage, verdict.outcome.value).inc()
        for d in verdict.decisions:
            if d.error is not None:
                outcome = "error"
            else:
                outcome = d.action.value if d.triggered else "allow"
                self.scores.labels(stage, d.policy).observe(d.score)
            self.decisions.labels(stage, d.policy, outcome).inc()
        if verdict.errors:
            self.scorer_errors.labels(stage).inc()

    def record_raised(self, *, endpoint: str, stage: str) -> None:
        """A check whose scorer failed under a `raise` fail mode: no verdict reached the app."""
        self.checks.labels(endpoint, stage, "raised").inc()
        self.scorer_errors.labels(stage).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
