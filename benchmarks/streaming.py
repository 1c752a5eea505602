"""Streamed output moderation on the embedded model: incremental vs from-scratch, side by side.

    python benchmarks/streaming.py                 # bf16, a ~2,000-token answer, every 200 chars
    python benchmarks/streaming.py --tokens 500 --every 100

A `StreamModerator` checks the answer every `--every` characters for the four built-in policies
and once at the end. The same stream runs twice in one process: with the scorer's incremental
stream scorer (each check prefills only the new text, the policy suffixes run over a copy of the
cache) and from scratch (each check prefills the prompt and the whole answer so far, then the
suffixes: the prefix-shared path without a kept cache). Printed: total scoring time, the added
latency of the last check, the latency of one check of a 200-token answer for scale, and the
largest score difference between the two runs.
"""

from __future__ import annotations

import argparse
import time

from guardrail import Guard, StreamModerator, TransformersScorer, Windows, builtin_policy
from guardrail.classifier import default_adapter, embedded_model_path

POLICIES = ["dangerous", "harassment", "hate", "sexual"]
PROMPT = [{"role": "user", "content": "Write me a long history of a harbour town."}]
SENTENCES = [
    "The history of the harbour town goes back to the twelfth century, when fishermen built the first stone pier.",
    "Merchants from the south began to trade salt, wool and timber there, and the market square grew around the church.",
    "In the long winters the boats stayed in, nets were mended by lamplight and the tavern kept its fires burning late.",
    "A lighthouse was raised on the northern rocks in 1790, after three ships were lost in a single autumn storm.",
]


def answer_text(scorer: TransformersScorer, tokens: int) -> str:
    text, n = "", 0
    while len(scorer.tokenizer(text)["input_ids"]) < tokens:
        text += SENTENCES[n % len(SENTENCES)] + " "
        n += 1
    return text.strip()


class _Timed:
    """Wraps a scorer and adds up the time of its calls (the moderator's checks)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls: list[float] = []

    def score(self, requests: object) -> list[float]:
        start = time.perf_counter()
        scores = self.inner.score(requests)  # type: ignore[attr-defined]
        self.calls.append(time.perf_counter() - start)
        return scores

    def stream_scorer(self) -> _Timed:
        return _Timed(self.inner.stream_scorer())  # type: ignore[attr-defined]

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]


def run(scorer: object, answer: str, every: int) -> tuple[list[float], list[float]]:
    """The checks' times and the final verdict's scores for one streamed answer."""
    policies = [builtin_policy(p, threshold=1.0) for p in POLICIES]  # never stop: time every check
    guard = Guard(policies, scorer=scorer, windows=Windows(size=4 * len(answer), overlap=100))
    moderator = StreamModerator(guard, PROMPT, every=every)
    timed = moderator._checker.scorer
    for start in range(0, len(answer), 12):  # token-sized deltas
        moderator.feed(answer[start : start + 12])
    moderator.finish()
    assert moderator.verdict is not None
    calls = timed.calls if isinstance(timed, _Timed) else []
    return calls, [d.score for d in moderator.verdict.decisions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--every", type=int, default=200)
    args = parser.parse_args()
    scorer = TransformersScorer.from_pretrained(
        str(embedded_model_path()), dtype=args.dtype, adapter=str(default_adapter())
    )
    answer = answer_text(scorer, args.tokens)
    short = answer_text(scorer, 200)
    run(_Timed(scorer), short, args.every)  # warm-up

    class Scratch(_Timed):
        def stream_scorer(self) -> _Timed:
            return self  # no per-stream scorer: every check from scratch

        def close(self) -> None:
            pass

    incremental, inc_scores = run(_Timed(scorer), answer, args.every)
    scratch_runner = Scratch(scorer)
    scratch, scratch_scores = run(scratch_runner, answer, args.every)
    one_short = Scratch(scorer)
    guard = Guard(POLICIES, scorer=one_short)
    for _ in range(3):
        guard.check_output([*PROMPT, {"role": "assistant", "content": short}])
    short_check = sorted(one_short.calls)[1]
    diff = max(abs(a - b) for a, b in zip(inc_scores, scratch_scores))
    print(f"answer: {args.tokens} tokens ({len(answer)} chars), checked every {args.every} chars, "
          f"{len(incremental)} checks, {len(POLICIES)} policies, {args.dtype}")
    print(f"{'':34}{'incremental':>12}{'from scratch':>14}{'ratio':>8}")
    print(f"{'total scoring time (s)':34}{sum(incremental):12.2f}{sum(scratch):14.2f}"
          f"{sum(scratch) / sum(incremental):7.2f}x")
    print(f"{'last check (ms)':34}{incremental[-1] * 1000:12.0f}{scratch[-1] * 1000:14.0f}"
          f"{scratch[-1] / incremental[-1]:7.2f}x")
    print(f"one check of a 200-token answer: {short_check * 1000:.0f} ms; last incremental check / that: "
          f"{incremental[-1] / short_check:.2f}x (target <= 1.5x)")
    print(f"max |score difference| incremental vs scratch, final check: {diff:.2e}")


if __name__ == "__main__":
    main()
