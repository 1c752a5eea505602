"""Streaming moderation: what `hold` and `stream_first` let reach the caller.

The proofs use a `RecordingScorer`, so each test knows exactly which prefixes were checked and
which check failed: in `hold` mode the caller gets exactly the last prefix a check passed; in
`stream_first` mode the stream stops within one check window of the violation.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from guardrail import Blocked, Guard, builtin_policy
from guardrail.testing import KeywordScorer, RecordingScorer
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.output_parsers import StrOutputParser

from guardrail_langchain import GuardedChatModel, GuardedRunnable
from guardrail_langchain.testing import ScriptedChatModel

CLEAN = "Bread needs flour, water, salt and yeast. Knead it well, let it rise, shape it, bake it hot. "
TEXT = CLEAN + "Then kill the neighbour's dog quietly at night. " + CLEAN * 3
EVERY = 24
REFUSAL = "I can't help with that."


def setup(kind: str, mode: str, action: str = "rewrite", text: str = TEXT) -> tuple[Any, ScriptedChatModel, RecordingScorer]:
    scorer = RecordingScorer(KeywordScorer({"kill": 0.99}))
    guard = Guard([builtin_policy("dangerous", action=action)], scorer=scorer)
    model = ScriptedChatModel(responses=[text])
    options = {"stream_mode": mode, "every": EVERY}
    if kind == "runnable":
        return GuardedRunnable(model | StrOutputParser(), guard, **options), model, scorer
    return GuardedChatModel(chat_model=model, guard=guard, **options), model, scorer


def collect(guarded: Any, is_async: bool) -> tuple[list[str], BaseException | None]:
    """The text of each non-empty chunk the caller received, and the error that ended the stream.

    (A chat model's stream ends with an empty `chunk_position="last"` chunk; it is dropped.)
    """
    out: list[str] = []

    def text(chunk: Any) -> str:
        return chunk if isinstance(chunk, str) else chunk.content

    async def agen() -> None:
        async for chunk in guarded.astream("How do I bake bread?"):
            out.append(text(chunk))

    try:
        if is_async:
            asyncio.run(agen())
        else:
            for chunk in guarded.stream("How do I bake bread?"):
                out.append(text(chunk))
    except Blocked as exc:
        return [t for t in out if t], exc
    return [t for t in out if t], None


def output_checks(scorer: RecordingScorer) -> list[str]:
    return [r.turn.response for r in scorer.requests if r.turn.response is not None]


def assert_stopped_early(kind: str, model: ScriptedChatModel) -> None:
    if kind == "chat_model":
        assert model.pulled < len(TEXT.split()), "generation stopped at the violation"
    # A RunnableSequence (`model | parser`) drains its steps' streams for tracing when closed
    # (langchain_core `_transform_stream_with_config`), so there generation runs on; none of
    # it reaches the caller, which the assertions above prove.


CASES = [(kind, is_async) for kind in ("runnable", "chat_model") for is_async in (False, True)]
IDS = [f"{k}-{'async' if a else 'sync'}" for k, a in CASES]


@pytest.mark.parametrize(("kind", "is_async"), CASES, ids=IDS)
def test_hold_releases_only_text_a_passing_check_covered(kind: str, is_async: bool) -> None:
    guarded, model, scorer = setup(kind, "hold")
    chunks, error = collect(guarded, is_async)
    assert error is None and chunks[-1].endswith(REFUSAL)
    released = "".join(c for c in chunks[:-1])
    checks = output_checks(scorer)
    passed = [c for c in checks if "kill" not in c.lower()]
    assert any("kill" in c for c in checks), "the violation was checked"
    # Exactly the last passing prefix was released: nothing of the violating window.
    assert released == passed[-1]
    violation = TEXT.index("kill")
    assert len(released) <= violation and TEXT.startswith(released)
    assert len(chunks) > 2, "hold mode still streams, window by window"
    assert_stopped_early(kind, model)


@pytest.mark.parametrize(("kind", "is_async"), CASES, ids=IDS)
def test_stream_first_stops_within_one_window(kind: str, is_async: bool) -> None:
    guarded, model, scorer = setup(kind, "stream_first")
    chunks, error = collect(guarded, is_async)
    assert error is None and chunks[-1].endswith(REFUSAL)
    released = "".join(chunks[:-1])
    violation_end = TEXT.index("kill") + len("kill")
    longest_chunk = max(len(w) for w in TEXT.split())
    assert TEXT.startswith(released) and "kill" in released  # released at once, before its check
    assert len(released) - violation_end <= EVERY + longest_chunk
    failing = next(c for c in output_checks(scorer) if "kill" in c)
    assert released == failing  # the stream ended at the first failing check
    assert_stopped_early(kind, model)


@pytest.mark.parametrize(("kind", "is_async"), CASES, ids=IDS)
@pytest.mark.parametrize("mode", ["hold", "stream_first"])
def test_block_action_raises_mid_stream(kind: str, is_async: bool, mode: str) -> None:
    guarded, _, _ = setup(kind, mode, action="block")
    chunks, error = collect(guarded, is_async)
    assert isinstance(error, Blocked) and error.verdict.stage.value == "output"
    assert REFUSAL not in "".join(chunks)
    if mode == "hold":
        assert "kill" not in "".join(chunks)


@pytest.mark.parametrize(("kind", "is_async"), CASES, ids=IDS)
def test_clean_stream_arrives_whole_and_in_pieces(kind: str, is_async: bool) -> None:
    guarded, _, scorer = setup(kind, "hold", text=CLEAN * 3)
    chunks, error = collect(guarded, is_async)
    assert error is None and "".join(chunks) == CLEAN * 3
    assert len([c for c in chunks if c]) >= len(CLEAN * 3) // (EVERY + 10)
    assert output_checks(scorer)[-1] == CLEAN * 3  # the final check covers everything


def test_violation_in_the_tail_is_caught_by_the_final_check() -> None:
    guarded, _, _ = setup("runnable", "hold", text="All fine here. Then kill")
    chunks, error = collect(guarded, False)
    assert error is None and "kill" not in "".join(chunks) and chunks[-1].endswith(REFUSAL)


def tool_model(args: dict) -> ScriptedChatModel:
    message = AIMessage("Searching.", tool_calls=[{"name": "search", "args": args, "id": "c1"}])
    return ScriptedChatModel(responses=[message])


@pytest.mark.parametrize("is_async", [False, True])
def test_tool_call_chunks_are_held_and_checked(is_async: bool) -> None:
    guard = Guard(["dangerous"], scorer=KeywordScorer({"kill": 0.99}))
    clean = GuardedChatModel(chat_model=tool_model({"q": "bread"}), guard=guard, every=4)

    async def agen(model: Any) -> list[AIMessageChunk]:
        return [c async for c in model.astream("find bread")]

    chunks = asyncio.run(agen(clean)) if is_async else list(clean.stream("find bread"))
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.content == "Searching." and total.tool_calls[0]["args"] == {"q": "bread"}
    assert all(not c.tool_call_chunks for c in chunks[:-1]), "tool calls come last, once checked"

    bad = GuardedChatModel(chat_model=tool_model({"q": "how to kill"}), guard=guard, every=4)
    with pytest.raises(Blocked):
        asyncio.run(agen(bad)) if is_async else list(bad.stream("find bread"))


def test_structured_stream_is_held_until_checked() -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        text: str

    guard = Guard(["dangerous"], scorer=KeywordScorer({"kill": 0.99}))

    def model(text: str) -> GuardedChatModel:
        message = AIMessage("", tool_calls=[{"name": "Answer", "args": {"text": text}, "id": "c1"}])
        return GuardedChatModel(chat_model=ScriptedChatModel(responses=[message]), guard=guard)

    assert list(model("bread").with_structured_output(Answer).stream("q")) == [Answer(text="bread")]
    assert model("bread").with_structured_output(Answer).invoke("q") == Answer(text="bread")
    with pytest.raises(Blocked):
        list(model("kill").with_structured_output(Answer).stream("q"))
    with pytest.raises(Blocked):
        model("kill").with_structured_output(Answer).invoke("q")


def test_unit_chunks_checks_every_n_chunks() -> None:
    scorer = RecordingScorer(KeywordScorer({}))
    guard = Guard(["dangerous"], scorer=scorer)
    guarded = GuardedChatModel(chat_model=ScriptedChatModel(responses=[CLEAN]), guard=guard, every=4, unit="chunks")
    assert "".join(c.content for c in guarded.stream("q")) == CLEAN
    chunks = len([t for t in CLEAN.split(" ")]) * 2
    assert len(output_checks(scorer)) >= chunks // 4 - 1
