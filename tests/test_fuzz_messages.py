"""Property-based fuzz of message shapes through `Guard.check_*` and `acheck_*`.

The property: every input gives either a `Verdict` or a typed `MessageError`/`ConfigError`,
never another exception; a verdict means every text part of the judged message (and, for the
output stage, the tail of the user prompt) reached the scorer, normalised, every character of it
in some window, for every policy; content that can't be scored (image, audio, file parts, wrong types) never
yields a verdict; and the sync and async paths agree.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from guardrail import (
    ConfigError,
    Guard,
    MessageError,
    Policy,
    ScoreRequest,
    Stage,
    Windows,
    builtin_policy,
    normalize_for_scoring,
)
from guardrail._windows import prompt_tail

EXAMPLES = 1500
WINDOWS = Windows(size=2000, overlap=200)
TEXT_TYPES = ("text", "input_text", "output_text")
ASSISTANT = ("assistant", "model")
CALL_FIELDS = ("tool_calls", "function_call", "refusal")


class Recorder:
    """Scores 0.99 when the judged text contains "kill" (any case), else 0.01; records requests."""

    def __init__(self) -> None:
        self.requests: list[ScoreRequest] = []
        self._lock = threading.Lock()

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        with self._lock:
            self.requests += requests
        return [0.99 if "kill" in judged(r).lower() else 0.01 for r in requests]

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[float]:
        await asyncio.sleep(0)
        return self.score(requests)


def judged(request: ScoreRequest) -> str:
    return request.turn.prompt if request.turn.response is None else request.turn.response


POLICIES = [
    builtin_policy("hate"),
    Policy(name="spam", input_guideline='"No Spam": The prompt shall not contain or seek generation of spam.'),
]


def make_guard() -> tuple[Guard, Recorder]:
    recorder = Recorder()
    return Guard(POLICIES, scorer=recorder, windows=WINDOWS), recorder


# --- strategies -------------------------------------------------------------------------------

short = st.text(max_size=40)
odd = st.text(st.characters(codec=None, categories=["Cc", "Cf", "Cs", "Zs", "Zl", "So", "Lo", "Mn"]), max_size=30)
huge = st.builds(lambda unit, n: unit * n, st.text(min_size=1, max_size=7), st.integers(400, 4000))
harmful = st.builds(lambda a, b: f"{a} KiLl {b}", short, short)
texts = st.one_of(short, odd, huge, harmful, st.sampled_from(["", "kill", "\x00", "<end_of_turn>", "\u202e"]))

text_parts = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(TEXT_TYPES), "text": texts}),
    st.builds(lambda kind, text: SimpleNamespace(type=kind, text=text), st.sampled_from(TEXT_TYPES), texts),
)
uncheckable_parts = st.one_of(
    st.just({"type": "image_url", "image_url": {"url": "https://example.com/kill.png"}}),
    st.just({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}),
    st.just({"type": "file", "file": {"file_data": "data:application/pdf;base64,AAAA", "filename": "a.pdf"}}),
    st.just({"type": "input_image", "image_url": "https://example.com/a.png"}),
    st.just({"type": "refusal", "refusal": "kill"}),
    st.fixed_dictionaries({"type": st.sampled_from(TEXT_TYPES)}),  # no text
    st.fixed_dictionaries({"type": st.sampled_from(TEXT_TYPES), "text": st.sampled_from([None, 5, b"kill", ["kill"]])}),
    st.fixed_dictionaries({"type": st.one_of(st.none(), st.integers(), short), "text": texts}),
    texts,  # a bare string where a part object belongs
    st.integers(),
    st.none(),
)
parts = st.one_of(text_parts, text_parts, uncheckable_parts)
contents = st.one_of(
    texts,
    texts,
    st.lists(parts, max_size=4),
    st.lists(text_parts, max_size=4).map(tuple),
    st.sampled_from([None, 0, 1.5, b"kill", bytearray(b"x"), {"text": "kill"}, {"type": "text", "text": "kill"}]),
)
roles = st.one_of(
    st.sampled_from(["user", "assistant", "system", "tool", "developer", "model", "user"]),
    st.sampled_from(["", "USER", "function", None, 3, ["user"], b"user"]),
)
tool_calls = st.lists(
    st.fixed_dictionaries({
        "id": st.just("call_1"),
        "type": st.just("function"),
        "function": st.fixed_dictionaries({"name": st.just("search"), "arguments": texts.map(lambda t: f'{{"q": "{t}"}}')}),
    }),
    min_size=1,
    max_size=2,
)
messages_one = st.one_of(
    st.fixed_dictionaries({"role": roles, "content": contents}),
    st.builds(lambda role, content: SimpleNamespace(role=role, content=content), roles, contents),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": st.sampled_from([None, ""]), "tool_calls": tool_calls}),
    st.fixed_dictionaries({"role": st.just("tool"), "tool_call_id": st.just("call_1"), "content": texts}),
    st.fixed_dictionaries({"role": st.just("user")}),  # no content
    st.sampled_from([None, 0, "user: hi", b"", ("user", "hi"), [], {}]),
)
conversations = st.one_of(
    st.lists(messages_one, max_size=5),
    st.lists(messages_one, max_size=5).map(tuple),
    texts,
    st.sampled_from([None, 0, b"kill", bytearray(b""), {"role": "user", "content": "kill"}, object()]),
)


# --- the oracle -------------------------------------------------------------------------------

def field(message: Any, name: str) -> Any:
    return message.get(name) if isinstance(message, Mapping) else getattr(message, name, None)


def as_items(messages: Any) -> list[Any]:
    return [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)


def text_pieces(content: Any) -> list[str] | None:
    """The scoreable text of a content value, or None when something in it can't be scored."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, (list, tuple)):
        return None
    pieces = []
    for part in content:
        if field(part, "type") not in TEXT_TYPES or not isinstance(field(part, "text"), str):
            return None
        pieces.append(field(part, "text"))
    return pieces


def covered(text: str, windows: list[str]) -> bool:
    """Every character of `text` lies in some window, the windows in order and gap-free."""
    end = 0
    for window in windows:
        start = text.rfind(window, 0, end + len(window))
        if start < 0:
            return False
        end = max(end, start + len(window))
    return bool(windows) and end == len(text)


def run(guard: Guard, messages: Any, stage: Stage, use_async: bool) -> Any:
    try:
        if use_async:
            return asyncio.run(guard.acheck(messages, stage))
        return guard.check(messages, stage)
    except (MessageError, ConfigError) as exc:
        return type(exc)


def assert_sound(messages: Any, stage: Stage) -> str:
    """Check one input on both paths; return 'verdict' or 'error'."""
    results = []
    for use_async in (False, True):
        guard, recorder = make_guard()
        results.append((run(guard, messages, stage, use_async), recorder.requests))
    (sync, sync_requests), (async_, async_requests) = results
    if isinstance(sync, type):
        assert async_ is sync, f"sync raised {sync.__name__}, async gave {async_!r}"
        return "error"
    assert not isinstance(async_, type), f"async raised {async_.__name__}, sync gave a verdict"
    assert sync.decisions == async_.decisions and sync_requests == async_requests

    items = as_items(messages)
    index = sync.message_index
    message = items[index]
    wanted = ("user",) if stage is Stage.INPUT else ASSISTANT
    assert field(message, "role") in wanted
    assert all(field(m, "role") not in wanted for m in items[index + 1:]), "not the latest turn"
    content = field(message, "content")
    calls = any(field(message, name) for name in CALL_FIELDS)
    pieces = [] if content is None and calls else text_pieces(content)
    assert pieces is not None, f"a verdict for content that can't be scored: {content!r}"
    text = normalize_for_scoring("\n".join(pieces))  # what the scorer is meant to see
    if calls:  # content is scored; tool calls are the subject of test_tool_calls_are_scored_or_refused
        windows = [judged(r) for r in sync_requests]
        scored = [normalize_for_scoring(p) for p in pieces]
        assert all(any(p in w for w in windows) for p in scored if len(p) <= WINDOWS.overlap)
        assert sync.blocked or "kill" not in text.lower()
    for policy in (p for p in POLICIES if p.applies_to(stage) and not calls):
        windows = [judged(r) for r in sync_requests if r.policy == policy.name]
        assert covered(text, windows), f"{policy.name}: the judged text is not fully scored"
    if stage is Stage.OUTPUT:
        users = [i for i in range(index) if field(items[i], "role") == "user"]
        prompt_pieces = text_pieces(field(items[users[-1]], "content")) if users else [""]
        assert prompt_pieces is not None, "a verdict with a user prompt that can't be scored"
        prompt = prompt_tail(normalize_for_scoring("\n".join(prompt_pieces)), WINDOWS.prompt_tail)
        assert all(r.turn.prompt == prompt for r in sync_requests)
    if not calls:
        assert sync.blocked == ("kill" in text.lower()), "the verdict doesn't follow the scores"
    return "verdict"


FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEN: dict[str, int] = {"verdict": 0, "error": 0}


@FUZZ
@given(messages=conversations, stage=st.sampled_from(Stage))
def test_any_message_shape_gives_a_sound_verdict_or_a_typed_error(messages: Any, stage: Stage) -> None:
    outcome = assert_sound(messages, stage)
    event(f"{stage.value}: {outcome}")
    SEEN[outcome] += 1


@FUZZ
@given(
    history=st.lists(messages_one, max_size=3),
    user=contents,
    answer=st.one_of(contents, st.none()),
    stage=st.sampled_from(Stage),
)
def test_well_formed_turns_are_scored_whole(history: list[Any], user: Any, answer: Any, stage: Stage) -> None:
    """Conversations that end in a real turn, so most cases reach the scorer."""
    messages = [*history, {"role": "user", "content": user}]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    outcome = assert_sound(messages, stage)
    event(f"{stage.value}: {outcome}")
    SEEN[outcome] += 1


def test_the_fuzz_reached_both_outcomes() -> None:
    if SEEN["verdict"] + SEEN["error"] == 0:
        pytest.skip("run with the fuzz tests above")
    assert SEEN["verdict"] > 50 and SEEN["error"] > 50, SEEN


@pytest.mark.parametrize(
    "content",
    [
        [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}],
        [{"type": "text", "text": "hi"}, {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}],
        [{"type": "file", "file": {"file_id": "f"}}],
    ],
)
def test_non_text_parts_are_refused_in_both_stages(content: list[Any]) -> None:
    guard, recorder = make_guard()
    with pytest.raises(MessageError, match="only text parts"):
        guard.check_input([{"role": "user", "content": content}])
    with pytest.raises(MessageError, match="only text parts"):
        guard.check_output([{"role": "user", "content": "hi"}, {"role": "assistant", "content": content}])
    assert recorder.requests == []


def test_an_unhashable_part_type_is_a_message_error() -> None:
    guard, _ = make_guard()
    with pytest.raises(MessageError):
        guard.check_input([{"role": "user", "content": [{"type": ["text"], "text": "kill"}]}])


@settings(max_examples=200, deadline=None)
@given(content=st.sampled_from([None, "", "Let me look.", [{"type": "text", "text": "ok"}]]), calls=tool_calls)
def test_tool_calls_are_scored_or_refused(content: Any, calls: list[dict]) -> None:
    """An assistant turn's tool-call arguments reach the caller, so they must be judged too."""
    guard, _ = make_guard()
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": content, "tool_calls": calls}]
    try:
        verdict = guard.check_output(messages)
    except MessageError:
        return
    if any("kill" in c["function"]["arguments"].lower() for c in calls):
        assert verdict.blocked, "harmful tool-call arguments were allowed unscored"
