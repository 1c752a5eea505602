"""Per-call overhead of the guarded OpenAI wrapper versus the bare client on the same transport.

Both clients talk to the same fake server (`guardrail_openai.testing.FakeOpenAI` over an httpx
mock transport), and the guard uses a keyword scorer, so the numbers are the wrapper's own cost:
input check, output check, stream relaying and moderation. Streams are consumed fully.

    python benchmarks/overhead_openai.py             # 2000 calls per row
    python benchmarks/overhead_openai.py --calls 500
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from guardrail import Guard
from guardrail.testing import KeywordScorer
from guardrail_openai import AsyncGuardedOpenAI, GuardedOpenAI
from guardrail_openai.testing import FakeOpenAI

REPLY = "Mix flour, water, salt and yeast, knead for ten minutes, let it rise, then bake it hot. " * 3
MESSAGES = [{"role": "user", "content": "How do I bake bread?"}]


def _guard() -> Guard:
    return Guard(["dangerous", "hate"], scorer=KeywordScorer({"bomb": 0.99}))


def _sync_call(client: Any, api: str, stream: bool) -> Callable[[], None]:
    def call() -> None:
        if api == "chat":
            result = client.chat.completions.create(model="m", messages=MESSAGES, stream=stream)
        else:
            result = client.responses.create(model="m", input=MESSAGES, stream=stream)
        if stream:
            for _ in result:
                pass

    return call


def _async_call(client: Any, api: str, stream: bool) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        if api == "chat":
            result = await client.chat.completions.create(model="m", messages=MESSAGES, stream=stream)
        else:
            result = await client.responses.create(model="m", input=MESSAGES, stream=stream)
        if stream:
            async for _ in result:
                pass

    return call


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return statistics.median(ordered) * 1e3, p99 * 1e3


def _time_sync(bare: Callable[[], None], guarded: Callable[[], None], calls: int) -> tuple[list[float], list[float]]:
    """Alternate bare and guarded calls so machine noise hits both alike."""
    for _ in range(min(50, calls)):
        bare(), guarded()
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(calls):
        for call, out in ((bare, samples[0]), (guarded, samples[1])):
            start = time.perf_counter()
            call()
            out.append(time.perf_counter() - start)
    return samples


async def _time_async(
    bare: Callable[[], Awaitable[None]], guarded: Callable[[], Awaitable[None]], calls: int
) -> tuple[list[float], list[float]]:
    for _ in range(min(50, calls)):
        await bare(), await guarded()
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(calls):
        for call, out in ((bare, samples[0]), (guarded, samples[1])):
            start = time.perf_counter()
            await call()
            out.append(time.perf_counter() - start)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="guarded vs bare OpenAI client overhead")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--every", type=int, default=200, help="stream check window (chars)")
    args = parser.parse_args(argv)
    server = FakeOpenAI(REPLY)
    bare, abare = server.client(), server.async_client()
    guarded = GuardedOpenAI(bare, _guard(), every=args.every)
    aguarded = AsyncGuardedOpenAI(abare, _guard(), every=args.every)

    print(f"{args.calls} calls per row; reply {len(REPLY)} chars; stream window {args.every} chars; times in ms")
    print(f"{'path':<28} {'bare med':>9} {'bare p99':>9} {'guard med':>10} {'guard p99':>10} {'overhead med':>13}")
    for api in ("chat", "responses"):
        for stream in (False, True):
            name = f"{api} {'stream' if stream else 'create'}"
            rows = [
                (f"sync  {name}", *_time_sync(_sync_call(bare, api, stream), _sync_call(guarded, api, stream), args.calls)),
                (f"async {name}", *asyncio.run(_time_async(_async_call(abare, api, stream), _async_call(aguarded, api, stream), args.calls))),
            ]
            for label, base, wrapped in rows:
                (bm, bp), (gm, gp) = _stats(base), _stats(wrapped)
                print(f"{label:<28} {bm:9.3f} {bp:9.3f} {gm:10.3f} {gp:10.3f} {gm - bm:+13.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
