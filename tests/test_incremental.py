"""Incremental stream scoring: each check reads only the new answer text, scores equal a fresh check."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from guardrail import Guard, StreamModerator, TransformersScorer
from guardrail._incremental import StreamCaches

POLICIES = ["dangerous", "harassment", "hate", "sexual"]
PROMPT = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper and the sea."}]
ANSWER = (
    "The keeper climbed the stairs every night, counting the steps like old friends. "
    "Storms came from the west and the lamp burned on, a small stubborn star over black water. "
    "One winter a fishing boat lost its way, and the beam found it between two waves; the crew "
    "rowed home singing, and the keeper wrote their names in the logbook beside the weather. "
) * 3


@pytest.fixture(scope="module")
def scorer(tiny_model_dir: Path) -> TransformersScorer:
    return TransformersScorer.from_pretrained(str(tiny_model_dir), dtype="float32")


def _prefixes(every: int) -> list[str]:
    cuts = list(range(every, len(ANSWER), every)) + [len(ANSWER)]
    return [ANSWER[:cut] for cut in cuts]


def test_every_check_equals_a_fresh_check_and_reads_only_new_text(scorer: TransformersScorer) -> None:
    guard = Guard(POLICIES, scorer=scorer)
    stream = scorer.stream_scorer()
    for text in _prefixes(37):  # odd cuts: words split at the seam, retokenized next time
        requests = guard.requests([*PROMPT, {"role": "assistant", "content": text}], "output")
        fresh = scorer.score(requests)
        incremental = stream.score(requests)
        assert incremental == pytest.approx(fresh, abs=1e-4)
    full = guard.requests([*PROMPT, {"role": "assistant", "content": ANSWER}], "output")
    prefix_tokens = len(scorer.tokenizer(full[0].prompt)["input_ids"])
    # Each prefix token is committed about once (a retokenized seam costs a restart at most).
    assert stream.prefilled < 1.5 * prefix_tokens
    stream.close()
    assert stream.nbytes == 0


def test_a_single_policy_and_another_turn_score_like_fresh_checks(scorer: TransformersScorer) -> None:
    guard = Guard(["hate"], scorer=scorer)
    stream = scorer.stream_scorer()
    for text in _prefixes(90):
        requests = guard.requests([*PROMPT, {"role": "assistant", "content": text}], "output")
        assert stream.score(requests) == pytest.approx(scorer.score(requests), abs=1e-4)
    other = guard.requests([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "output")
    assert stream.score(other) == pytest.approx(scorer.score(other), abs=1e-4)


def test_caches_are_bounded_per_scorer_and_never_shared(scorer: TransformersScorer) -> None:
    guard = Guard(POLICIES, scorer=scorer)
    caches = StreamCaches(max_streams=2)
    from guardrail._incremental import StreamScorer

    streams = [StreamScorer(scorer, caches) for _ in range(3)]
    for n, stream in enumerate(streams):
        text = f"Answer number {n}: " + ANSWER[:200]
        stream.score(guard.requests([*PROMPT, {"role": "assistant", "content": text}], "output"))
        assert stream.nbytes > 0
    assert len(caches) == 2 and streams[0].nbytes == 0  # the least recently used was evicted
    assert streams[1]._ids != streams[2]._ids
    del streams[2], stream
    gc.collect()
    assert len(caches) == 1  # an abandoned stream's cache goes with it


def test_the_moderator_scores_incrementally_and_frees_the_cache(scorer: TransformersScorer) -> None:
    from guardrail import builtin_policy

    # A random tiny model: thresholds it can't reach, so the whole answer streams through.
    guard = Guard([builtin_policy(p, threshold=1.0) for p in POLICIES], scorer=scorer)
    moderator = StreamModerator(guard, PROMPT, every=60)
    stream = moderator._checker.scorer
    assert stream is not scorer and hasattr(stream, "prefilled")
    released = ""
    for n in range(0, len(ANSWER), 7):
        released += moderator.feed(ANSWER[n : n + 7]).text
    step = moderator.finish()
    released += step.text
    assert not step.stopped and released == ANSWER
    assert stream.prefilled > 0 and stream.nbytes == 0  # closed after the final check
    final = guard.check_output([*PROMPT, {"role": "assistant", "content": ANSWER}])
    assert [d.score for d in moderator.verdict.decisions] == pytest.approx([d.score for d in final.decisions], abs=1e-4)


def test_guards_without_stream_scorers_are_used_as_they_are() -> None:
    from guardrail.testing import KeywordScorer

    guard = Guard(["hate"], scorer=KeywordScorer({}))
    assert guard.for_stream() is guard
    guard.for_stream().close_stream()  # nothing to free, nothing closed
