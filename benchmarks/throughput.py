"""Checks per second under 1, 4, 16 and 64 concurrent async requests, batched vs unbatched.

    python benchmarks/throughput.py                 # embedded model, bf16
    python benchmarks/throughput.py --policies 4 --checks 32

Unbatched: the bare `TransformersScorer`; each `acheck_input` scores in a worker thread and the
scorer's lock runs the forwards one at a time. Batched: `BatchingScorer(scorer, max_wait_ms=0)`,
what the configuration's `batching = true` and `Guard`'s default build: checks that arrive while
a forward runs are gathered and share the next one (several turns'
prefixes prefilled together, all their policy suffixes in one batch). Each check is one user
message of a few dozen tokens, made distinct by a ticket number; all concurrency levels run the
same messages.
`max|dP|` compares each check's batched score with its unbatched one (bf16 padding moves P(Yes)
slightly).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import Sequence
from typing import Any

from guardrail import BUILTIN_POLICIES, BatchingScorer, Guard

MESSAGES = [
    "How do I bake sourdough bread at home?",
    "Can you give me a few tips for keeping basil plants healthy on a sunny windowsill indoors?",
    "What is the capital of Australia, and why is it not Sydney?",
    "Write a short poem about autumn leaves falling in a quiet park while children play.",
    "Explain the difference between a list and a tuple in Python, with an example of each.",
    "My neighbour's dog barks all night. How can I talk to them about it politely?",
    "Summarise the plot of Moby Dick in three sentences.",
    "Which is healthier for breakfast: oatmeal with fruit or scrambled eggs on toast, and why?",
]


async def _run_checks(guard: Guard, texts: Sequence[str], concurrency: int) -> tuple[float, list[float]]:
    """Run every text through `acheck_input` with `concurrency` callers; seconds and scores."""
    scores: list[float] = [0.0] * len(texts)
    todo = iter(range(len(texts)))

    async def caller() -> None:
        for i in todo:
            verdict = await guard.acheck_input(texts[i])
            scores[i] = max(d.score for d in verdict.decisions)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return time.perf_counter() - start, scores


def throughput_rows(
    scorer: Any,
    *,
    concurrencies: Sequence[int] = (1, 4, 16, 64),
    min_checks: int = 16,
    policies: int = 1,
) -> list[dict[str, float]]:
    """For each concurrency: checks/s without and with a `BatchingScorer` around `scorer`
    (a bare one: unwrap a configured scorer's `inner` first), and max |dP|."""
    names = list(BUILTIN_POLICIES)[:policies]
    plain = Guard(names, scorer=scorer)
    batched = Guard(names, scorer=BatchingScorer(scorer, max_batch=4 * getattr(scorer, "batch_size", 8), max_wait_ms=0))
    asyncio.run(_run_checks(plain, MESSAGES[:2], 1))  # warm-up
    rows = []
    for concurrency in concurrencies:
        n = max(concurrency, min_checks)
        # Every check distinct: identical turns would share one prefill and flatter batching.
        texts = [f"{m} (ticket {i})" for i, m in enumerate(itertools.islice(itertools.cycle(MESSAGES), n))]
        t_plain, s_plain = asyncio.run(_run_checks(plain, texts, concurrency))
        t_batched, s_batched = asyncio.run(_run_checks(batched, texts, concurrency))
        rows.append({
            "concurrency": concurrency,
            "checks": n,
            "unbatched": n / t_plain,
            "batched": n / t_batched,
            "dp": max(abs(a - b) for a, b in zip(s_plain, s_batched)),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--checks", type=int, default=16, help="checks per row (at least the concurrency)")
    parser.add_argument("--policies", type=int, default=1)
    parser.add_argument("--concurrency", default="1,4,16,64", help="comma-separated levels")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from guardrail import TransformersScorer
    from guardrail.classifier import embedded_model_path

    scorer = TransformersScorer.from_pretrained(str(embedded_model_path()), dtype=args.dtype)
    levels = [int(c) for c in args.concurrency.split(",")]
    rows = throughput_rows(scorer, concurrencies=levels, min_checks=args.checks, policies=args.policies)
    print(f"{'concurrent':>10} {'checks':>6} {'unbatched/s':>12} {'batched/s':>10} {'ratio':>6} {'max|dP|':>8}")
    for r in rows:
        print(f"{r['concurrency']:>10} {r['checks']:>6} {r['unbatched']:>12.1f} {r['batched']:>10.1f} "
              f"{r['batched'] / r['unbatched']:>6.2f} {r['dp']:>8.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
