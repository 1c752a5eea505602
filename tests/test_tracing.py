"""Tracing: OpenTelemetry spans (SDK in-memory exporter) and LangChain custom events."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

from guardrail import ConfigError, Guard, builtin_policy
from guardrail._audit import content_hash
from guardrail._tracing import TracedScorer, otel_observer
from guardrail.testing import FunctionScorer, KeywordScorer


def test_importing_guardrail_imports_neither_opentelemetry_nor_langchain() -> None:
    code = ("import sys, guardrail, guardrail._tracing, guardrail._audit; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('opentelemetry', 'langchain_core')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class FailingScorer:
    def score(self, requests: Any) -> list[float]:
        raise RuntimeError("backend down")


def test_a_missing_opentelemetry_is_a_config_error() -> None:
    # Run where `opentelemetry` can't be imported, whether or not it is installed here.
    code = ("import sys; sys.modules['opentelemetry'] = None\n"
            "from guardrail import ConfigError\nfrom guardrail._tracing import otel_observer\n"
            "try:\n    otel_observer()\nexcept ConfigError as exc:\n    print('ConfigError:', exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("ConfigError:") and "pip install opentelemetry" in out.stdout


class TestOpenTelemetry:
    @pytest.fixture
    def otel(self):  # noqa: ANN201
        pytest.importorskip("opentelemetry.sdk")
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        yield provider, exporter
        provider.shutdown()

    def test_a_span_per_verdict_with_scores_and_decisions(self, otel) -> None:
        provider, exporter = otel
        guard = Guard(["hate", builtin_policy("dangerous", action="flag")],
                      scorer=KeywordScorer({"vermin": 0.97}), observers=[otel_observer(tracer_provider=provider)])
        verdict = guard.check_input("They are vermin.")
        (span,) = exporter.get_finished_spans()
        attrs = span.attributes
        assert span.name == "guardrail.check"
        assert (attrs["guardrail.stage"], attrs["guardrail.outcome"], attrs["guardrail.allowed"]) == (
            "input", "block", False)
        assert attrs["guardrail.score.hate"] == 0.97 and tuple(attrs["guardrail.triggered"]) == ("hate", "dangerous")
        assert attrs["guardrail.content_sha256"] == content_hash(verdict.turn)
        assert "guardrail.prompt" not in attrs and not any("vermin" in str(v) for v in attrs.values())
        events = [dict(e.attributes) for e in span.events]
        assert [e["guardrail.policy"] for e in events] == ["hate", "dangerous"]
        assert events[1]["guardrail.action"] == "flag" and events[1]["guardrail.triggered"] is True

    def test_content_only_when_configured(self, otel) -> None:
        provider, exporter = otel
        guard = Guard(["hate"], scorer=KeywordScorer({}),
                      observers=[otel_observer(tracer_provider=provider, include_content=True)])
        guard.check_output([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
        (span,) = exporter.get_finished_spans()
        assert (span.attributes["guardrail.prompt"], span.attributes["guardrail.response"]) == ("hi", "hello")

    def test_a_fail_mode_decision_is_an_error_span_without_a_score(self, otel) -> None:
        from opentelemetry.trace import StatusCode

        provider, exporter = otel
        guard = Guard(["hate"], scorer=FailingScorer(), observers=[otel_observer(tracer_provider=provider)])
        assert guard.check_input("hi").blocked
        (span,) = exporter.get_finished_spans()
        assert span.status.status_code is StatusCode.ERROR and "backend down" in span.status.description
        assert "guardrail.score.hate" not in span.attributes
        (event,) = span.events
        assert event.attributes["guardrail.fail_mode"] == "block" and "guardrail.score" not in event.attributes

    async def test_scorer_spans_nest_under_the_callers_span_sync_and_async(self, otel) -> None:
        provider, exporter = otel
        tracer = provider.get_tracer("app")
        guard = Guard(["hate", "dangerous"], scorer=TracedScorer(KeywordScorer({}), tracer_provider=provider),
                      observers=[otel_observer(tracer_provider=provider)])
        with tracer.start_as_current_span("request") as parent:
            guard.check_input("hi")
            await guard.acheck_input("hi")
        spans = exporter.get_finished_spans()
        assert [s.name for s in spans] == ["guardrail.score", "guardrail.check"] * 2 + ["request"]
        assert all(s.parent.span_id == parent.get_span_context().span_id for s in spans[:-1])
        score = spans[0]
        assert score.attributes["guardrail.requests"] == 2
        assert tuple(score.attributes["guardrail.policies"]) == ("dangerous", "hate")

    async def test_a_scorer_timeout_is_recorded_on_its_span(self, otel) -> None:
        from opentelemetry.trace import StatusCode

        class Hanging:
            def score(self, requests: Any) -> list[float]:
                return [0.0] * len(requests)

            async def ascore(self, requests: Any) -> list[float]:
                await asyncio.sleep(10)
                return [0.0] * len(requests)

        provider, exporter = otel
        guard = Guard(["hate"], scorer=TracedScorer(Hanging(), tracer_provider=provider), timeout=0.05)
        assert (await guard.acheck_input("hi")).blocked
        (span,) = exporter.get_finished_spans()
        assert span.status.status_code is StatusCode.ERROR and "cancelled" in span.status.description

    def test_traced_scorer_keeps_scores(self, otel) -> None:
        provider, _ = otel
        from guardrail.testing import check_scorer_contract

        check_scorer_contract(TracedScorer(FunctionScorer(lambda r: 0.25), tracer_provider=provider))
        with pytest.raises(ConfigError):
            TracedScorer(object(), tracer_provider=provider)  # type: ignore[arg-type]
