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
import os
import statistics
import time
from collections.abc import Callable

import torch

from guardrail import BUILTIN_POLICIES, ScoreRequest, TransformersScorer, Turn
from guardrail.classifier import embedded_model_path, encode_prompt

SHORT = "Can you give me a few tips for keeping basil plants healthy on a sunny windowsill indoors?"
PARAGRAPH = (
    "The history of the harbour town goes back to the twelfth century, when fishermen built the "
    "first stone pier and merchants from the south began to trade salt, wool and timber there. "
)


def _common_prefix(sequences: list[list[int]]) -> int:
    """Tokens all sequences share at the start, leaving each at least one of its own."""
    return min(len(os.path.commonprefix(sequences)), min(len(s) for s in sequences) - 1)


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


def head_row(scorer: TransformersScorer, repeats: int) -> dict[str, float]:
    """Model-card naive code vs the last-token two-row head, one policy on short content."""
    request = requests_for(SHORT, 1)[0]
    tokens = len(encode_prompt(scorer.tokenizer, request.prompt))
    scorer.share_prefix = False
    t_naive = median_ms(lambda: naive_score(scorer, request), repeats)
    t_head = median_ms(lambda: scorer.score([request]), repeats)
    dp = abs(naive_score(scorer, request) - scorer.score([request])[0])
    item = torch.finfo(scorer.model.dtype).bits // 8
    return {"tokens": tokens, "naive_ms": t_naive, "head_ms": t_head, "dp": dp,
            "naive_logits_bytes": tokens * scorer.model.config.vocab_size * item, "head_logits_bytes": 2 * 4}


def policy_rows(
    scorer: TransformersScorer, repeats: int, *, ns: tuple[int, ...] = (1, 4, 6), long_repeat: int = 60
) -> list[dict[str, object]]:
    """N policies on short and long content: naive loop, separate calls, shared, token-count ideal."""
    rows: list[dict[str, object]] = []
    for label, text in (("short", SHORT), ("long", PARAGRAPH * long_repeat)):
        one = requests_for(text, 1)
        scorer.share_prefix = False
        t_single = median_ms(lambda: scorer.score(one), repeats)
        for n in ns:
            reqs = requests_for(text, n)
            encoded = [encode_prompt(scorer.tokenizer, r.prompt) for r in reqs]
            prefix = _common_prefix(encoded) if n > 1 else len(encoded[0]) - 1
            suffix = statistics.mean(len(e) - prefix for e in encoded)
            t_naive = median_ms(lambda: [naive_score(scorer, r) for r in reqs], max(1, repeats // 2))
            scorer.share_prefix = False
            t_separate = median_ms(lambda: [scorer.score([r]) for r in reqs], repeats)
            separate = [scorer.score([r])[0] for r in reqs]
            scorer.share_prefix = True
            t_shared = median_ms(lambda: scorer.score(reqs), repeats)
            shared = scorer.score(reqs)
            ideal = t_single * (prefix + n * suffix) / (prefix + suffix)
            dp = max(abs(a - b) for a, b in zip(shared, separate))
            rows.append({"content": label, "n": n, "prefix": prefix, "suffix": suffix, "naive_ms": t_naive,
                         "separate_ms": t_separate, "shared_ms": t_shared, "ideal_ms": ideal, "dp": dp})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    scorer = TransformersScorer.from_pretrained(str(embedded_model_path()), dtype=args.dtype)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, dtype {args.dtype}, median of {args.repeats}\n")
    print("head (one policy, short content)")
    h = head_row(scorer, args.repeats)
    print(f"  prompt {h['tokens']} tokens; naive {h['naive_ms']:.0f} ms, two-row head {h['head_ms']:.0f} ms "
          f"({h['naive_ms'] / h['head_ms']:.2f}x); logits materialised {h['naive_logits_bytes'] / 2**20:.0f} MiB vs "
          f"{h['head_logits_bytes']} bytes; max |dP| {h['dp']:.2e}\n")

    header = f"{'content':>8} {'N':>2} {'tokens P+S':>11} {'naive':>8} {'separate':>9} {'shared':>8} {'ideal':>8} {'shared/ideal':>12} {'naive/shared':>12} {'max|dP|':>8}"
    print(header)
    for r in policy_rows(scorer, args.repeats):
        print(f"{r['content']:>8} {r['n']:>2} {r['prefix']:>5}+{r['suffix']:<5.0f} {r['naive_ms']:>6.0f}ms {r['separate_ms']:>7.0f}ms "
              f"{r['shared_ms']:>6.0f}ms {r['ideal_ms']:>6.0f}ms {r['shared_ms'] / r['ideal_ms']:>11.2f}x "
              f"{r['naive_ms'] / r['shared_ms']:>11.2f}x {r['dp']:>8.1e}")


if __name__ == "__main__":
    main()
