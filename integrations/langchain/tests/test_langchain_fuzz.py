"""Property-based fuzz of LangChain message shapes through the adapter's conversion and a guard.

Inputs (`input_messages`) and outputs (`output_text`) of every shape the adapter accepts give
either a verdict on all of the text they carry (text blocks, bare strings, tool-call names and
arguments) or a typed `MessageError`; blocks that can't be scored (image, audio, file,
reasoning in a user turn, unknown types) never yield a verdict.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from typing import Any

import pytest
from guardrail import Blocked, ConfigError, Guard, MessageError, ScoreRequest, normalize_for_scoring
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompt_values import ChatPromptValue
from langchain_core.runnables import RunnableLambda

from guardrail_langchain import guard_runnable, input_messages, output_text

EXAMPLES = 600


class KillScorer:
    """0.99 when the judged text contains "kill" (any case), else 0.01; keeps the requests."""

    def __init__(self) -> None:
        self.requests: list[ScoreRequest] = []

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        self.requests += requests
        return [0.99 if "kill" in (r.turn.response if r.turn.response is not None else r.turn.prompt).lower()
                else 0.01 for r in requests]


def make_guard() -> tuple[Guard, KillScorer]:
    scorer = KillScorer()
    return Guard(["hate", "dangerous"], scorer=scorer, windows=None), scorer


short = st.text(max_size=30)
odd = st.text(st.characters(codec=None, categories=["Cc", "Cf", "Zs", "So", "Lo", "Mn"]), max_size=20)
huge = st.builds(lambda unit, n: unit * n, st.text(min_size=1, max_size=6), st.integers(500, 4000))
harmful = st.builds(lambda a, b: f"{a}kIlL{b}", short, short)
texts = st.one_of(short, odd, huge, harmful, st.sampled_from(["", "kill", "<end_of_turn>", "\x00\x1b"]))


class Piece:
    """A generated value with the text it must put in front of the scorer (None: unscoreable)."""

    def __init__(self, value: Any, pieces: list[str] | None) -> None:
        self.value, self.pieces = value, pieces

    def __repr__(self) -> str:
        return f"Piece({self.value!r})"


text_blocks = st.one_of(
    texts.map(lambda t: Piece({"type": "text", "text": t}, [t])),
    texts.map(lambda t: Piece(t, [t])),  # a bare string block
)
media_blocks = st.one_of(
    st.just(Piece({"type": "image", "url": "https://example.com/kill.png"}, None)),
    st.just(Piece({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}, None)),
    st.just(Piece({"type": "audio", "base64": "AAAA", "mime_type": "audio/wav"}, None)),
    st.just(Piece({"type": "file", "base64": "AAAA", "mime_type": "application/pdf", "filename": "a.pdf"}, None)),
    texts.map(lambda t: Piece({"type": "weird", "x": t}, None)),
)
unscoreable_blocks = st.one_of(media_blocks, texts.map(lambda t: Piece({"type": "reasoning", "reasoning": t}, None)))


def _content(blocks: list[Piece]) -> Piece:
    pieces = [p for b in blocks for p in (b.pieces or [])] if all(b.pieces is not None for b in blocks) else None
    return Piece([b.value for b in blocks], pieces)


human_contents = st.one_of(
    texts.map(lambda t: Piece(t, [t])),
    st.lists(text_blocks, max_size=4).map(_content),
    st.lists(st.one_of(text_blocks, unscoreable_blocks), min_size=1, max_size=3).map(_content),
)
tool_calls = st.lists(
    st.builds(lambda t, n: {"name": f"search{n}", "args": {"q": t}, "id": f"call_{n}"}, texts, st.integers(0, 9)),
    max_size=2,
)


def _human(content: Piece, shape: str) -> Piece:
    value = {"message": HumanMessage(content=content.value), "tuple": ("human", content.value),
             "dict": {"role": "user", "content": content.value}}[shape]
    return Piece(value, content.pieces)


humans = st.builds(_human, human_contents, st.sampled_from(["message", "message", "tuple", "dict"]))
others = st.one_of(
    texts.map(SystemMessage),
    st.builds(lambda t, calls: AIMessage(content=t, tool_calls=calls), texts, tool_calls),
    st.builds(lambda t: ToolMessage(content=t, tool_call_id="call_0"), texts),
    texts.map(lambda t: ("ai", t)),
)


@st.composite
def conversations(draw: st.DrawFn) -> Piece:
    """A history, then the latest human turn, then maybe AI/tool messages after it."""
    history = draw(st.lists(st.one_of(humans, others.map(lambda m: Piece(m, None))), max_size=3))
    latest = draw(humans)
    tail = draw(st.lists(others, max_size=2))
    messages = [p.value for p in history] + [latest.value] + tail
    shape = draw(st.sampled_from(["list", "prompt_value", "messages_key"]))
    if shape == "prompt_value":
        if not all(isinstance(m, (HumanMessage, AIMessage, SystemMessage, ToolMessage)) for m in messages):
            shape = "list"
        else:
            return Piece(ChatPromptValue(messages=messages), latest.pieces)
    if shape == "messages_key":
        return Piece({"messages": messages, "session": 7}, latest.pieces)
    return Piece(messages, latest.pieces)


inputs = st.one_of(
    conversations(),
    texts.map(lambda t: Piece(t, [t])),
    st.builds(lambda a, b: Piece({"question": a, "context": b, "k": 3, "x": None}, [a, b]), texts, texts),
    st.sampled_from([Piece(None, None), Piece(5, None), Piece(b"kill", None), Piece({}, None),
                     Piece({"question": ["kill"]}, None), Piece([], None), Piece(object(), None)]),
)


def scored_form(text: str) -> str:
    """Text as scored, decomposed and without combining marks: adjacent pieces are joined
    before normalising, and NFKC reorders or composes combining marks across the join (a
    piece ending in U+0300 then one starting with U+0316 come out as U+0316 U+0300), so a piece
    normalised alone need not be a substring of the joined text; its base characters are."""
    decomposed = unicodedata.normalize("NFD", normalize_for_scoring(text))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def judged_text(scorer: KillScorer) -> set[str]:
    return {r.turn.prompt if r.turn.response is None else r.turn.response for r in scorer.requests}


FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(case=inputs)
def test_inputs_give_a_verdict_on_all_their_text_or_a_typed_error(case: Piece) -> None:
    guard, scorer = make_guard()
    try:
        verdict = guard.check_input(input_messages(case.value))
    except (MessageError, ConfigError):
        event("typed error")
        return
    event("blocked" if verdict.blocked else "allowed")
    assert case.pieces is not None, f"a verdict for input that can't be scored: {case.value!r}"
    (text,) = judged_text(scorer)  # no windows: one judged text, scored by every policy
    assert len(scorer.requests) == 2
    assert all(scored_form(piece) in scored_form(text) for piece in case.pieces), "text of the latest user turn was not scored"
    if any("kill" in piece.lower() for piece in case.pieces):
        assert verdict.blocked


ai_contents = st.one_of(
    texts.map(lambda t: Piece(t, [t])),
    st.lists(text_blocks, max_size=3).map(_content),
    st.lists(st.one_of(text_blocks, media_blocks), min_size=1, max_size=3).map(_content),
)


@st.composite
def ai_messages(draw: st.DrawFn) -> Piece:
    content = draw(ai_contents)
    calls = draw(tool_calls)
    if calls and isinstance(content.value, list) and draw(st.booleans()):
        # how providers that use tool_use blocks shape a message: blocks and parsed tool_calls
        content = Piece([*content.value, *({"type": "tool_use", "id": c["id"], "name": c["name"], "input": c["args"]}
                                           for c in calls)], content.pieces)
    kind = draw(st.sampled_from([AIMessage, AIMessageChunk]))
    message = kind(content=content.value, tool_calls=calls)
    arguments = [json.dumps(c["args"]["q"], ensure_ascii=False)[1:-1] for c in calls]
    pieces = None if content.pieces is None else [*content.pieces, *(c["name"] for c in calls), *arguments]
    return Piece(message, pieces)


def _has_kill(case: Piece) -> bool:
    return any("kill" in normalize_for_scoring(piece).lower() for piece in case.pieces or [])


@FUZZ
@given(case=ai_messages())
def test_outputs_give_a_verdict_on_text_and_tool_calls_or_a_typed_error(case: Piece) -> None:
    guard, scorer = make_guard()
    try:
        verdict = guard.check_output([{"role": "user", "content": "q"},
                                      {"role": "assistant", "content": output_text(case.value)}])
    except MessageError:
        event("typed error")
        return
    event("blocked" if verdict.blocked else "allowed")
    assert case.pieces is not None, f"a verdict for output that can't be scored: {case.value!r}"
    (text,) = judged_text(scorer)
    assert all(scored_form(piece) in scored_form(text) for piece in case.pieces), "output text or a tool call was not scored"
    assert verdict.blocked == _has_kill(case)


@settings(max_examples=EXAMPLES // 3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(question=inputs, answer=ai_messages())
def test_a_guarded_runnable_returns_only_checked_output(question: Piece, answer: Piece) -> None:
    guard, _ = make_guard()
    guarded = guard_runnable(RunnableLambda(lambda _: answer.value), guard)
    try:
        result = guarded.invoke(question.value)
    except (Blocked, MessageError) as exc:
        event(type(exc).__name__)
        return
    event("returned")
    assert result is answer.value
    assert question.pieces is not None and answer.pieces is not None
    assert not _has_kill(question) and not _has_kill(answer)


# Gaps the fuzz found (now fixed), each reduced to one case.

@pytest.mark.parametrize(
    "content",
    [
        [{"type": "text-plain", "text": "kill", "mime_type": "text/plain"}],  # ValueError
        [{"type": "text"}],  # KeyError
        [{"type": "tool_use", "id": "1", "name": "f", "input": {"q": "kill"}}],  # AttributeError
    ],
)
def test_unconvertible_human_blocks_are_message_errors(content: list[Any]) -> None:
    with pytest.raises(MessageError):
        input_messages([HumanMessage(content=content)])


@pytest.mark.parametrize(
    "message",
    [
        AIMessage(content="", invalid_tool_calls=[{"name": "run", "args": "kill them", "id": "1", "error": "bad"}]),
        AIMessage(content=[{"type": "tool_use", "id": "1", "name": "run", "input": {"q": "kill them"}}]),
    ],
    ids=["invalid_tool_calls", "tool_use_block_only"],
)
def test_every_tool_call_in_an_output_is_scored(message: AIMessage) -> None:
    assert "kill them" in output_text(message)


def test_tool_args_that_are_not_json_still_give_text() -> None:
    assert "kill" in output_text(AIMessage(content="", tool_calls=[{"name": "f", "args": {"q": b"kill"}, "id": "1"}]))
