"""The shared stream moderator: hold never releases unchecked text; stream_first stops in one window."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail import ConfigError, Guard, StreamModerator, builtin_policy
from guardrail.testing import KeywordScorer, RecordingScorer

CHAT = [{"role": "user", "content": "tell me a story"}]
BENIGN = "Once upon a time, in a quiet village by the sea, there lived an old fisherman who loved the tides. "
BAD = "I will murder you tonight. "


def guard(action: str = "block", recorder: list | None = None) -> Guard:
    scorer = KeywordScorer({"murder": 0.99})
    if recorder is not None:
        scorer = RecordingScorer(scorer)
        recorder.append(scorer)
    return Guard([builtin_policy("harassment", action=action)], scorer=scorer)


def words(text: str) -> list[str]:
    return [w + " " for w in text.split(" ") if w]


def run(moderator: StreamModerator, deltas: list[str]) -> tuple[str, bool]:
    released = ""
    for delta in deltas:
        step = moderator.feed(delta)
        released += step.text
        if step.stopped:
            return released, True
    step = moderator.finish()
    return released + step.text, step.stopped


def test_hold_releases_everything_once_checked() -> None:
    moderator = StreamModerator(guard(), CHAT, every=40)
    released, stopped = run(moderator, words(BENIGN * 3))
    assert not stopped and released == "".join(words(BENIGN * 3))
    assert moderator.checks >= 3


def test_hold_never_releases_text_of_a_violating_window() -> None:
    moderator = StreamModerator(guard(), CHAT, every=40)
    deltas = words(BENIGN + BAD + BENIGN)
    released, stopped = run(moderator, deltas)
    assert stopped and "murder" not in released
    assert BENIGN.startswith(released)
    assert moderator.verdict is not None and moderator.verdict.blocked


def test_stream_first_stops_within_one_window_of_the_violation() -> None:
    every = 40
    moderator = StreamModerator(guard(), CHAT, mode="stream_first", every=every)
    text = BENIGN + BAD + BENIGN * 3
    released, stopped = run(moderator, words(text))
    assert stopped
    violation_end = len(BENIGN) + BAD.index("murder") + len("murder")
    assert len(released) <= violation_end + every
    assert text.startswith(released)


def test_checks_cut_at_word_boundaries() -> None:
    recorders: list = []
    moderator = StreamModerator(guard(recorder=recorders), CHAT, every=7)
    run(moderator, list("abc defgh ijklmnop qrs, tuv"))  # one character per delta
    checked = [r.turn.response for r in recorders[0].requests]
    assert checked[-1] == "abc defgh ijklmnop qrs, tuv"
    for text in checked[:-1]:
        assert text[-1] in " ,", f"check cut inside a word: {text!r}"


def test_final_check_runs_even_for_short_responses() -> None:
    recorders: list = []
    moderator = StreamModerator(guard(recorder=recorders), CHAT, every=1000)
    released, stopped = run(moderator, ["murder"])
    assert stopped and released == "" and moderator.checks == 1


def test_flag_lets_the_stream_through() -> None:
    moderator = StreamModerator(guard("flag"), CHAT, every=20)
    released, stopped = run(moderator, words(BENIGN + BAD))
    assert not stopped and "murder" in released and moderator.verdict.flags


def test_chunk_unit_checks_every_n_deltas() -> None:
    moderator = StreamModerator(guard(), CHAT, every=3, unit="chunks")
    run(moderator, words(BENIGN))
    assert moderator.checks == len(words(BENIGN)) // 3 + 1


def test_feeding_after_a_stop_releases_nothing() -> None:
    moderator = StreamModerator(guard(), CHAT, mode="stream_first", every=5)
    run(moderator, words(BAD))
    step = moderator.feed("more text ")
    assert step.stopped and step.text == ""


@pytest.mark.parametrize(("kwargs", "match"), [({"mode": "fast"}, "stream_mode"), ({"unit": "words"}, "unit"), ({"every": 0}, "positive")])
def test_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        StreamModerator(guard(), CHAT, **kwargs)


async def test_async_equals_sync() -> None:
    for mode in ("hold", "stream_first"):
        deltas = words(BENIGN + BAD + BENIGN)
        sync = StreamModerator(guard(), CHAT, mode=mode, every=30)
        expected = [sync.feed(d) for d in deltas] + [sync.finish()]
        moderator = StreamModerator(guard(), CHAT, mode=mode, every=30)
        got = [await moderator.afeed(d) for d in deltas] + [await moderator.afinish()]
        assert got == expected


@settings(max_examples=150, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=len(BENIGN + BAD + BENIGN)), max_size=40),
    every=st.integers(min_value=1, max_value=80),
    bad=st.booleans(),
)
def test_hold_property_over_random_chunkings(cuts: list[int], every: int, bad: bool) -> None:
    text = BENIGN + (BAD if bad else "") + BENIGN
    points = sorted({0, len(text), *[min(c, len(text)) for c in cuts]})
    deltas = [text[a:b] for a, b in zip(points, points[1:])]
    released, stopped = run(StreamModerator(guard(), CHAT, every=every), deltas)
    assert text.startswith(released)
    if bad:
        assert stopped and "murder" not in released
    else:
        assert not stopped and released == text


def test_async_path_runs_under_a_running_loop() -> None:
    async def main() -> str:
        moderator = StreamModerator(guard(), CHAT, every=10)
        out = ""
        for d in words(BENIGN):
            out += (await moderator.afeed(d)).text
        return out + (await moderator.afinish()).text

    assert asyncio.run(main()) == "".join(words(BENIGN))


class CountingModerator(StreamModerator):
    """Counts the characters the boundary scan is asked to inspect."""

    inspected = 0

    @staticmethod
    def _last_boundary(text: str, start: int, end: int) -> int:
        CountingModerator.inspected += end - start
        return StreamModerator._last_boundary(text, start, end)


@pytest.mark.parametrize("mode", ["hold", "stream_first"])
def test_text_without_boundaries_is_checked_by_characters_in_linear_work(mode: str) -> None:
    CountingModerator.inspected = 0
    every, size = 200, 80_000
    moderator = CountingModerator(guard(), CHAT, mode=mode, every=every)
    released, cuts = 0, set()
    for _ in range(0, size, 4):
        step = moderator.feed("x" * 4)
        released += len(step.text)
        cuts.add(moderator.checked)
        assert released <= moderator.checked + (every if mode == "stream_first" else 0)
    assert CountingModerator.inspected == size  # each character looked at once
    assert moderator.checks == size // (2 * every)  # a hard cut every 2 * every characters
    assert cuts == set(range(0, size + 1, 2 * every))
    assert released >= size - 2 * every  # released as it went, not only at the end
    step = moderator.finish()
    assert released + len(step.text) == size and not step.stopped


def test_chunks_without_boundaries_are_checked_too() -> None:
    moderator = StreamModerator(guard(), CHAT, every=5, unit="chunks")
    released = "".join(moderator.feed("abcdefg").text for _ in range(30))
    assert moderator.checks == 3 and released == "abcdefg" * 30  # every 2 * 5 chunks


def test_one_early_boundary_then_none_cuts_there_then_by_characters() -> None:
    moderator = StreamModerator(guard(), CHAT, every=10)
    cuts = []
    for delta in ["ab ", *["x" * 4] * 20]:
        moderator.feed(delta)
        cuts.append(moderator.checked)
    assert sorted(set(cuts)) == [0, 3, 23, 43, 63, 83] and moderator.checks == 5


def released_log(moderator: StreamModerator, deltas: list[str]) -> tuple[list[tuple[int, int]], bool]:
    """After each step: (characters released so far, end of the last passing check)."""
    released, log = 0, []
    for delta in deltas:
        step = moderator.feed(delta)
        released += len(step.text)
        log.append((released, moderator.checked))
        if step.stopped:
            return log, True
    step = moderator.finish()
    log.append((released + len(step.text), moderator.checked))
    return log, step.stopped


@settings(max_examples=200, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=60),
    every=st.integers(min_value=1, max_value=120),
    spaces=st.booleans(),
    at=st.integers(min_value=0, max_value=1500),
)
def test_stream_first_releases_at_most_every_characters_past_the_last_passing_check(
    cuts: list[int], every: int, spaces: bool, at: int
) -> None:
    filler = (BENIGN * 20) if spaces else "y" * 2000
    text = filler[:at] + "murder" + filler[at:]
    points = sorted({0, len(text), *[min(c, len(text)) for c in cuts]})
    deltas = [text[a:b] for a, b in zip(points, points[1:])]
    moderator = StreamModerator(guard(), CHAT, mode="stream_first", every=every)
    log, stopped = released_log(moderator, deltas)
    assert stopped
    assert all(released <= checked + every for released, checked in log)
    assert log[-1][0] <= at + len("murder") - 1 + every  # the last passing check ends before the word


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=80),
       every=st.integers(min_value=1, max_value=10), space=st.booleans())
def test_stream_first_releases_at_most_every_chunks_past_the_last_passing_check(
    sizes: list[int], every: int, space: bool
) -> None:
    deltas = ["z" * (n - 1) + (" " if space else "z") for n in sizes]
    moderator = StreamModerator(guard(), CHAT, mode="stream_first", every=every, unit="chunks")
    released, ends = 0, []
    for delta in deltas:
        released += len(moderator.feed(delta).text)
        ends.append(len(moderator.text))
        ahead = [end for end in ends if end > moderator.checked]  # chunks not wholly checked
        limit = ahead[every - 1] if len(ahead) >= every else len(moderator.text)
        assert released <= limit
    released += len(moderator.finish().text)
    assert released == sum(sizes)
