"""Per-call overhead of the LangChain adapters, with a fake scorer and a fake chat model.

    python benchmarks/overhead_langchain.py [--calls 2000]

Compares the fake chat model called directly with the same model behind `GuardedRunnable` and
behind `GuardedChatModel` (input and output checks, keyword scorer), for `invoke` and
`ainvoke`. The numbers are the adapters' own cost: LangChain callbacks, message conversion,
two guard checks; no model time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from guardrail import Guard
from guardrail.testing import KeywordScorer
from langchain_core.runnables import Runnable

from guardrail_langchain import GuardedChatModel, GuardedRunnable
from guardrail_langchain.testing import ScriptedChatModel

TEXT = "Mix flour, water, salt and yeast, knead it, let it rise and bake it."


def quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return statistics.median(ordered) * 1e6, p99 * 1e6


def time_sync(fn: Callable[[], object], calls: int) -> list[float]:
    for _ in range(min(200, calls)):
        fn()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


async def time_async(fn: Callable[[], Awaitable[object]], calls: int) -> list[float]:
    for _ in range(min(200, calls)):
        await fn()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)

    guard = Guard(["dangerous", "hate"], scorer=KeywordScorer({"bomb": 0.99}))
    model = ScriptedChatModel(responses=[TEXT])
    targets: dict[str, Runnable] = {
        "fake model (direct)": model,
        "GuardedRunnable(model)": GuardedRunnable(model, guard),
        "GuardedChatModel(model)": GuardedChatModel(chat_model=model, guard=guard),
    }
    prompt = "How do I bake bread?"
    rows = []
    base: dict[str, float] = {}
    for name, target in targets.items():
        for how in ("invoke", "ainvoke"):
            if how == "invoke":
                samples = time_sync(lambda t=target: t.invoke(prompt), args.calls)
            else:
                samples = asyncio.run(time_async(lambda t=target: t.ainvoke(prompt), args.calls))
            median, p99 = quantiles(samples)
            base.setdefault(how, median)
            rows.append((name, how, median, p99, median - base[how]))

    print(f"{args.calls} calls each; microseconds per call")
    header = f"{'target':<26} {'call':<8} {'median':>9} {'p99':>9} {'overhead (median)':>18}"
    print(header)
    print("-" * len(header))
    for name, how, median, p99, extra in rows:
        print(f"{name:<26} {how:<8} {median:>9.0f} {p99:>9.0f} {extra:>18.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
