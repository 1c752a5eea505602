"""Optimistic input checking through both adapters: guarded latency vs max(check, generation).

    python benchmarks/optimistic.py [--check 0.2 --generation 0.2 --repeats 5]

The input check and the generation are sleep-based fakes (a scorer that sleeps on input checks
only, a chat model / OpenAI server that sleeps before answering), so the figure isolates how
well the adapter overlaps them: sequential would take check + generation, ideal is the max.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence

from guardrail import Guard, ScoreRequest
from guardrail.testing import KeywordScorer

REPLY = "Mix flour, water, salt and yeast, knead it, let it rise and bake it."
MESSAGES = [{"role": "user", "content": "How do I bake bread?"}]


class SlowInputScorer:
    """Sleeps `delay` seconds per input-stage batch (sync sleeps, async awaits); output is instant."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.inner = KeywordScorer({"bomb": 0.99})

    def _slow(self, requests: Sequence[ScoreRequest]) -> bool:
        return any(r.turn.response is None for r in requests)

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        if self._slow(requests):
            time.sleep(self.delay)
        return self.inner.score(requests)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[float]:
        if self._slow(requests):
            await asyncio.sleep(self.delay)
        return self.inner.score(requests)


def _median_sync(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _median_async(fn: Callable[[], Awaitable[object]], repeats: int) -> float:
    async def go() -> float:
        await fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            await fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return asyncio.run(go())


def _langchain(check: float, generation: float, optimistic: bool) -> tuple[Callable[[], object], Callable[[], Awaitable[object]]]:
    from guardrail_langchain import GuardedRunnable
    from guardrail_langchain.testing import ScriptedChatModel

    model = ScriptedChatModel(responses=[REPLY], delay=generation)
    guarded = GuardedRunnable(model, Guard(["dangerous"], scorer=SlowInputScorer(check)), optimistic=optimistic)
    return (lambda: guarded.invoke("How do I bake bread?")), (lambda: guarded.ainvoke("How do I bake bread?"))


def _openai(check: float, generation: float, optimistic: bool) -> tuple[Callable[[], object], Callable[[], Awaitable[object]]]:
    from guardrail_openai import AsyncGuardedOpenAI, GuardedOpenAI
    from guardrail_openai.testing import FakeOpenAI

    def slow_reply(body: dict) -> str:  # the sync transport has no delay option: sleep here
        time.sleep(generation)
        return REPLY

    guard = Guard(["dangerous"], scorer=SlowInputScorer(check))
    sync = GuardedOpenAI(FakeOpenAI(slow_reply).client(), guard, optimistic=optimistic)
    asyn = AsyncGuardedOpenAI(FakeOpenAI(REPLY, delay=generation).async_client(), guard, optimistic=optimistic)
    return (lambda: sync.chat.completions.create(model="m", messages=MESSAGES),
            lambda: asyn.chat.completions.create(model="m", messages=MESSAGES))


ADAPTERS = {"LangChain GuardedRunnable": _langchain, "OpenAI chat.completions": _openai}


def optimistic_rows(*, check: float = 0.2, generation: float = 0.2, repeats: int = 3) -> list[dict[str, object]]:
    """Per adapter and sync/async: median latency optimistic and sequential, and the ideal."""
    rows = []
    for name, build in ADAPTERS.items():
        optimistic_sync, optimistic_async = build(check, generation, True)
        sequential_sync, sequential_async = build(check, generation, False)
        for how, opt, seq in (("sync", optimistic_sync, sequential_sync), ("async", optimistic_async, sequential_async)):
            measure = _median_sync if how == "sync" else _median_async
            rows.append({"adapter": name, "how": how, "optimistic": measure(opt, repeats),
                         "sequential": measure(seq, repeats), "ideal": max(check, generation)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", type=float, default=0.2)
    parser.add_argument("--generation", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"check {args.check * 1000:.0f} ms, generation {args.generation * 1000:.0f} ms; median of {args.repeats}")
    for r in optimistic_rows(check=args.check, generation=args.generation, repeats=args.repeats):
        print(f"{r['adapter']:<28} {r['how']:<6} optimistic {r['optimistic'] * 1000:6.0f} ms "
              f"({r['optimistic'] / r['ideal']:.3f}x max)  sequential {r['sequential'] * 1000:6.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
