"""The adapter kernel with a plain-dict codec (what an HTTP proxy would write): the machine's
rules, sync and async on the same cases."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from guardrail import (
    Blocked,
    ConfigError,
    Guard,
    GuardOptions,
    Verdict,
    ainvoke,
    aopen_stream,
    builtin_policy,
    invoke,
    open_stream,
    react,
)
from guardrail.testing import KeywordScorer, RecordingScorer

USER = [{"role": "user", "content": "How do I bake bread?"}]
BAD_USER = [{"role": "user", "content": "How do I kill the oven?"}]


class DictChunks:
    """A ChunkReader over `{"delta": text}` / `{"tool": {...}}` dicts."""

    def __init__(self) -> None:
        self.tools: list[str] = []

    def visible(self, item: dict) -> dict:
        return item

    def text(self, item: dict) -> str:
        if "tool" in item:
            self.tools.append(f"{item['tool']['name']}({item['tool']['arguments']})")
        return item.get("delta", "")

    def held(self, item: dict) -> bool:
        return "tool" in item

    def split(self, item: dict, n: int) -> tuple[dict, dict]:
        return {"delta": item["delta"][:n]}, {"delta": item["delta"][n:]}

    def extra_text(self) -> str:
        return "\n".join(self.tools)

    def last(self, items: list[dict]) -> list[dict]:
        return items

    def refusal(self, refusal: str, *, after_text: bool) -> list[dict]:
        return [{"refusal": refusal}]


class DictCall:
    """A guarded request in plain dicts; `reply` is the text, or a list of stream chunks."""

    def __init__(self, messages: list[dict], reply: Any, *, is_async: bool = False) -> None:
        self.conversation = messages
        self.reply = reply
        self.is_async = is_async
        self.started = 0
        self.pulled = False
        self.closed = False

    def start(self) -> Any:
        self.started += 1
        if isinstance(self.reply, list):
            return self._astream() if self.is_async else self._stream()
        result = {"choices": [{"content": self.reply}]}
        return self._later(result) if self.is_async else result

    async def _later(self, result: Any) -> Any:
        return result

    def _stream(self) -> Iterator[dict]:
        try:
            self.pulled = True
            yield from self.reply
        finally:
            self.closed = True

    async def _astream(self) -> Any:
        try:
            self.pulled = True
            for item in self.reply:
                yield item
        finally:
            self.closed = True

    def visible(self, result: dict) -> dict:
        return result

    def outputs(self, result: dict) -> list[str]:
        return [c["content"] for c in result["choices"]]

    def refuse(self, result: dict, indexes: set[int], refusal: str) -> dict:
        return {"choices": [{"content": refusal if n in indexes else c["content"]} for n, c in enumerate(result["choices"])]}

    def refusal(self, refusal: str) -> dict:
        return {"choices": [{"content": refusal}]}

    def reader(self) -> DictChunks:
        return DictChunks()


def make_guard(action: str = "block") -> Guard:
    return Guard([builtin_policy("dangerous", action=action)], scorer=RecordingScorer(KeywordScorer({"kill": 0.99})))


def run(is_async: bool, guard: Guard, options: GuardOptions, call: DictCall) -> Any:
    call.is_async = is_async
    if isinstance(call.reply, list):
        if not is_async:
            return list(open_stream(guard, options, call))

        async def consume() -> list[Any]:
            return [item async for item in await aopen_stream(guard, options, call)]

        return asyncio.run(consume())
    return asyncio.run(ainvoke(guard, options, call)) if is_async else invoke(guard, options, call)


BOTH = pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])


@BOTH
def test_a_clean_call_passes_and_a_rewrite_refuses(is_async: bool) -> None:
    assert run(is_async, make_guard(), GuardOptions(), DictCall(USER, "Knead it.")) == {"choices": [{"content": "Knead it."}]}
    refused = run(is_async, make_guard("rewrite"), GuardOptions(), DictCall(USER, "Then kill it."))
    assert refused == {"choices": [{"content": "I can't help with that."}]}


@BOTH
def test_a_blocked_input_raises_before_the_call_or_refuses_when_asked(is_async: bool) -> None:
    call = DictCall(BAD_USER, "Knead it.")
    with pytest.raises(Blocked, match="input"):
        run(is_async, make_guard(), GuardOptions(), call)
    assert call.started == 0
    seen: list[Verdict] = []
    options = GuardOptions(on_block="refuse", on_verdict=seen.append)
    assert run(is_async, make_guard(), options, call) == {"choices": [{"content": "I can't help with that."}]}
    assert call.started == 0 and [v.blocked for v in seen] == [True]


@BOTH
def test_hold_mode_releases_only_checked_text_and_stops_on_a_violation(is_async: bool) -> None:
    words = "Knead the dough well. Then kill the yeast slowly. Bake it.".split(" ")
    chunks = [{"delta": w + " "} for w in words]
    guard = make_guard("rewrite")
    out = run(is_async, guard, GuardOptions(every=8), DictCall(USER, chunks))
    assert out[-1] == {"refusal": guard.refusal}
    released = "".join(c["delta"] for c in out[:-1])
    assert "kill" not in released and released
    checked = [r.turn.response for r in guard.scorer.requests if r.turn.response is not None]
    assert any(c.startswith(released) for c in checked), "everything released was checked first"


@BOTH
def test_tool_calls_wait_for_the_final_check_and_are_scored_by_the_rule(is_async: bool) -> None:
    chunks = [{"delta": "Calling. "}, {"tool": {"name": "act", "arguments": '{"do": "kill"}'}}, {"delta": "Done."}]
    with pytest.raises(Blocked):
        run(is_async, make_guard(), GuardOptions(stream_mode="stream_first", every=4), DictCall(USER, chunks))
    clean = [{"delta": "Calling. "}, {"tool": {"name": "act", "arguments": "{}"}}, {"delta": "Done."}]
    assert run(is_async, make_guard(), GuardOptions(), DictCall(USER, clean)) == clean


@BOTH
def test_optimistic_starts_the_call_first_and_drops_it_on_a_refusal(is_async: bool) -> None:
    call = DictCall(USER, [{"delta": "Knead it."}])
    assert run(is_async, make_guard(), GuardOptions(optimistic=True), call) == [{"delta": "Knead it."}]
    bad = DictCall(BAD_USER, [{"delta": "Knead it."}])
    with pytest.raises(Blocked):
        run(is_async, make_guard(), GuardOptions(optimistic=True), bad)
    for _ in range(500):  # a sync drop closes the stream when the background thread hands it over
        if bad.closed or is_async:
            break
        threading.Event().wait(0.01)
    assert bad.started == 1, "the call started before the input check"
    assert bad.closed or not bad.pulled, "a dropped call's stream is closed (or was never pulled)"


def test_sync_and_async_see_the_same_checks() -> None:
    chunks = [{"delta": w + " "} for w in "one two three four five six seven".split(" ")]
    texts = []
    for is_async in (False, True):
        guard = make_guard()
        run(is_async, guard, GuardOptions(every=6), DictCall(USER, chunks))
        texts.append([r.turn for r in guard.scorer.requests])
    assert texts[0] == texts[1] and len(texts[0]) > 2


def test_react_is_the_one_rule() -> None:
    guard = make_guard("flag")
    flagged = guard.check_input(BAD_USER)
    assert react(flagged, GuardOptions()) is False
    rewritten = make_guard("rewrite").check_input(BAD_USER)
    assert react(rewritten, GuardOptions()) is True
    blocked = make_guard().check_input(BAD_USER)
    with pytest.raises(Blocked):
        react(blocked, GuardOptions())
    assert react(blocked, GuardOptions(on_block="refuse")) is True


@pytest.mark.parametrize(
    "kwargs",
    [{"on_block": "ignore"}, {"reasoning": "hide"}, {"on_verdict": 3}, {"check_input": 1}, {"input_key": ""}, {"every": 0}],
)
def test_options_are_validated(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        GuardOptions(**kwargs)
