"""Verdicts reach LangChain callback handlers and `astream_events` as custom events."""

from __future__ import annotations

import math
from typing import Any

import pytest

from guardrail import ConfigError, Guard
from guardrail.testing import KeywordScorer
from guardrail_langchain import langchain_events


class TestLangChainEvents:
    def _chain(self, *observers: Any):  # noqa: ANN202
        from langchain_core.runnables import RunnableLambda

        guard = Guard(["hate"], scorer=KeywordScorer({"vermin": 0.97}), observers=observers)

        def check(text: str) -> str:
            guard.check_input(text)
            return text

        async def acheck(text: str) -> str:
            await guard.acheck_input(text)
            return text

        return guard, RunnableLambda(check, afunc=acheck)

    def test_outside_a_run_nothing_happens(self) -> None:
        guard, _ = self._chain(langchain_events())
        assert guard.check_input("hello").allowed

    def test_a_callback_handler_sees_each_verdict(self) -> None:
        from langchain_core.callbacks import BaseCallbackHandler

        seen: list[tuple[str, dict]] = []

        class Handler(BaseCallbackHandler):
            def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
                seen.append((name, data))

        _, chain = self._chain(langchain_events())
        chain.invoke("They are vermin.", {"callbacks": [Handler()]})
        chain.invoke("hello", {"callbacks": [Handler()]})
        assert [(n, d["outcome"]) for n, d in seen] == [("guardrail_verdict", "block"), ("guardrail_verdict", "allow")]
        assert "prompt" not in seen[0][1] and seen[0][1]["decisions"][0]["score"] == 0.97

    async def test_astream_events_carries_verdicts_through_the_guarded_runnable(self) -> None:
        from guardrail_langchain import guard_runnable
        from guardrail_langchain.testing import ScriptedChatModel

        guard = Guard(["hate"], scorer=KeywordScorer({"vermin": 0.97}),
                      observers=[langchain_events(include_content=True)])
        guarded = guard_runnable(ScriptedChatModel(responses=["Hello there."]), guard)
        events = [e async for e in guarded.astream_events("hi", version="v2")
                  if e["event"] == "on_custom_event"]
        assert [(e["name"], e["data"]["stage"], e["data"]["outcome"]) for e in events] == [
            ("guardrail_verdict", "input", "allow"), ("guardrail_verdict", "output", "allow")]
        assert events[1]["data"]["response"] == "Hello there."
        assert not any(math.isnan(d["score"]) for e in events for d in e["data"]["decisions"])

    def test_options_are_validated(self) -> None:
        with pytest.raises(ConfigError):
            langchain_events(name="")
