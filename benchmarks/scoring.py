"""Scoring speed on the embedded model, measured side by side in one run.

    python benchmarks/scoring.py               # bf16, the default dtype
    python benchmarks/scoring.py --dtype float32 --repeats 5

Rows:
- head: the model card's code (full-vocabulary logits at every position, then [-1, [Yes, No]])
  against our last-token two-row head: median time, the size of the logits each materialises,
  and max |dP| between them;
- N policies (1, 4, 6) on short (~50-token) and long (~2,000-token) content: the naive loop, one
  last-token call per policy, prefix-shared scoring, and the token-count ideal
  `single_call_time * (prefix + N * suffix) / (prefix + suffix)`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from guardrail import BUILTIN_POLICIES, ScoreRequest, TransformersScorer, Turn
from guardrail._embedded import embedded_model_path
from guardrail._transformers import _common_prefix, encode_prompt

SHORT = "Can you give me a few tips for keeping basil plants healthy on a sunny windowsill indoors?"
PARAGRAPH = (
    "The history of the harbour town goes back to the twelfth century, when fishermen built the "
    "first stone pier and merchants from the south began to trade salt, wool and timber there. "
)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def naive_score(scorer: TransformersScorer, request: ScoreRequest) -> float:
    ids = torch.tensor([encode_prompt(scorer.tokenizer, request.prompt)])
    with torch.inference_mode():
        logits = scorer.model(input_ids=ids).logits
    return torch.softmax(logits[0, -1, [scorer.yes_id, scorer.no_id]].float(), dim=0)[0].item()


def requests_for(text: str, n: int) -> list[ScoreRequest]:
    turn = Turn(prompt=text)
    return [ScoreRequest(turn=turn, guideline=p.guideline("input")) for p in list(BUILTIN_POLICIES.values())[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    scorer = TransformersScorer.from_pretrained(str(embedded_model_path()), dtype=args.dtype)
    vocab = scorer.model.config.vocab_size
    long_text = PARAGRAPH * 60

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, dtype {args.dtype}, median of {args.repeats}\n")
    print("head (one policy, short content)")
    request = requests_for(SHORT, 1)[0]
    tokens = len(encode_prompt(scorer.tokenizer, request.prompt))
    scorer.share_prefix = False
    t_naive = median_ms(lambda: naive_score(scorer, request), args.repeats)
    t_head = median_ms(lambda: scorer.score([request]), args.repeats)
    dp = abs(naive_score(scorer, request) - scorer.score([request])[0])
    item = torch.finfo(scorer.model.dtype).bits // 8
    print(f"  prompt {tokens} tokens; naive {t_naive:.0f} ms, two-row head {t_head:.0f} ms "
          f"({t_naive / t_head:.2f}x); logits materialised {tokens * vocab * item / 2**20:.0f} MiB vs "
          f"{2 * 4} bytes; max |dP| {dp:.2e}\n")

    header = f"{'content':>8} {'N':>2} {'tokens P+S':>11} {'naive':>8} {'separate':>9} {'shared':>8} {'ideal':>8} {'shared/ideal':>12} {'naive/shared':>12} {'max|dP|':>8}"
    print(header)
    for label, text in (("short", SHORT), ("long", long_text)):
        one = requests_for(text, 1)
        scorer.share_prefix = False
        t_single = median_ms(lambda: scorer.score(one), args.repeats)
        for n in (1, 4, 6):
            reqs = requests_for(text, n)
            encoded = [encode_prompt(scorer.tokenizer, r.prompt) for r in reqs]
            prefix = _common_prefix(encoded) if n > 1 else len(encoded[0]) - 1
            suffix = statistics.mean(len(e) - prefix for e in encoded)
            t_naive = median_ms(lambda: [naive_score(scorer, r) for r in reqs], max(1, args.repeats // 2))
            scorer.share_prefix = False
            t_separate = median_ms(lambda: [scorer.score([r]) for r in reqs], args.repeats)
            separate = [scorer.score([r])[0] for r in reqs]
            scorer.share_prefix = True
            t_shared = median_ms(lambda: scorer.score(reqs), args.repeats)
            shared = scorer.score(reqs)
            ideal = t_single * (prefix + n * suffix) / (prefix + suffix)
            dp = max(abs(a - b) for a, b in zip(shared, separate))
            print(f"{label:>8} {n:>2} {prefix:>5}+{suffix:<5.0f} {t_naive:>6.0f}ms {t_separate:>7.0f}ms "
                  f"{t_shared:>6.0f}ms {ideal:>6.0f}ms {t_shared / ideal:>11.2f}x {t_naive / t_shared:>11.2f}x {dp:>8.1e}")


if __name__ == "__main__":
    main()
