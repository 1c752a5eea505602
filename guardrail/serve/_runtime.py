"""A guard as the service runs it: readiness, admission, a deadline, metrics, and errors as
HTTP answers. Every route that checks content goes through `ServedGuard.check_many`, so a
route added later (the guarding proxy) gets the same limits without repeating them.

>>> served = served_guard(request)                                           # doctest: +SKIP
>>> [verdict] = await served.check_many([(messages, "input")], endpoint="/v1/chat/completions")
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from starlette.requests import Request

from guardrail._exceptions import ConfigError, MessageError, ScorerError
from guardrail._guard import Guard
from guardrail._messages import Turn
from guardrail._policies import Stage, as_stage
from guardrail._scoring import ScoreRequest, ascore
from guardrail._verdict import Verdict
from guardrail.serve._http import ApiError
from guardrail.serve._metrics import Metrics
from guardrail.serve._settings import ServeSettings

__all__ = ["ServedGuard", "served_guard"]

logger = logging.getLogger("guardrail.serve")

Check = tuple[Any, "Stage | str"]


def _chain(scorer: Any) -> Iterator[Any]:
    """The scorer and the scorers it wraps (`BatchingScorer.inner`, `TracedScorer.inner`)."""
    seen = 0
    while scorer is not None and seen < 8:
        yield scorer
        scorer = getattr(scorer, "inner", None)
        seen += 1


async def load_scorer(scorer: Any) -> None:
    """Call the first `aload()` or `load()` found down the wrapper chain (optional methods)."""
    for item in _chain(scorer):
        if callable(getattr(item, "aload", None)):
            await item.aload()
            return
        if callable(getattr(item, "load", None)):
            await asyncio.to_thread(item.load)
            return


async def close_scorer(scorer: Any) -> None:
    """Close the first scorer down the chain that can be closed (`aclose()`, else `close()`)."""
    for item in _chain(scorer):
        if callable(getattr(item, "aclose", None)):
            await item.aclose()
            return
        if callable(getattr(item, "close", None)):
            item.close()
            return


class ServedGuard:
    """The app's guard with the service's rules around each check (see `check_many`)."""

    def __init__(self, guard: Guard, *, settings: ServeSettings, metrics: Metrics) -> None:
        self.guard = guard
        self.settings = settings
        self.metrics = metrics
        self.in_flight = 0
        self.ready = False
        self.not_ready_reason = "the scorer is loading"
        self._preparing: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Load and warm up in the background, so /healthz answers while the model loads."""
        self._preparing = asyncio.get_running_loop().create_task(self._prepare())

    async def stop(self) -> None:
        if self._preparing is not None and not self._preparing.done():
            self._preparing.cancel()
            try:
                await self._preparing
            except asyncio.CancelledError:
                pass
        await close_scorer(self.guard.scorer)

    async def _prepare(self) -> None:
        delay = 0.5
        while True:
            try:
                await load_scorer(self.guard.scorer)
                if self.settings.warmup:
                    await self._warm_up()
            except Exception as exc:  # a remote model may come up later: keep trying
                self.not_ready_reason = f"the scorer failed to load or warm up: {exc}"
                logger.warning("%s; retrying in %.1f s", self.not_ready_reason, delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 30.0)
                continue
            self.ready = True
            self.metrics.ready.set(1)
            logger.info("guardrail is ready")
            return

    async def _warm_up(self) -> None:
        # Straight to the scorer, not through the guard: a warm-up is no check and is not audited.
        policy = self.guard.policies[0]
        stage = Stage.INPUT if policy.applies_to(Stage.INPUT) else Stage.OUTPUT
        turn = Turn(prompt="Hello") if stage is Stage.INPUT else Turn(prompt="Hello", response="Hi!")
        await ascore(self.guard.scorer, [ScoreRequest(turn=turn, guideline=policy.guideline(stage), policy=policy.name)])

    # --- checking ----------------------------------------------------------------------------
    def _retry(self) -> dict[str, str]:
        return {"Retry-After": str(self.settings.retry_after)}

    def queue_depth(self) -> int:
        pending = getattr(self.guard.scorer, "pending", 0)
        return pending if isinstance(pending, int) else 0

    def _admit(self, count: int) -> None:
        if not self.ready:
            raise ApiError(503, f"not ready: {self.not_ready_reason}", code="not_ready", headers=self._retry())
        limit = self.settings.max_in_flight
        if count > limit:
            raise ApiError(413, f"{count} checks in one request; at most {limit} (serve.max_in_flight)",
                           code="too_many_inputs")
        if self.in_flight + count > limit:
            raise ApiError(429, f"busy: {self.in_flight} checks in flight (limit {limit}); retry later",
                           code="busy", headers=self._retry())
        capacity = getattr(self.guard.scorer, "max_pending", None)
        if isinstance(capacity, int) and self.queue_depth() >= capacity:
            raise ApiError(503, f"the scorer's queue is full ({capacity} requests); retry later",
                           code="queue_full", headers=self._retry())

    def _validated(self, checks: Sequence[Check]) -> list[tuple[Any, Stage]]:
        """Several checks' messages are all read before any is scored, so a bad one costs nothing
        and no check is audited for a request answered 400. A lone check is read by the guard."""
        out = []
        for n, (messages, stage) in enumerate(checks):
            try:
                stage = as_stage(stage)
                if len(checks) > 1:
                    self.guard.requests(messages, stage)
            except (ConfigError, MessageError) as exc:
                where = f"input {n}: " if len(checks) > 1 else ""
                raise ApiError(400, f"{where}{exc}", code="invalid_messages") from None
            out.append((messages, stage))
        return out

    async def check_many(self, checks: Sequence[Check], *, endpoint: str) -> list[Verdict]:
        """Check each `(messages, stage)` concurrently (they share the scorer's batches).

        Raises `ApiError`: 400 bad messages, 413 more checks than `max_in_flight`, 429 busy,
        503 not ready / scorer queue full / scorer failed under a `raise` fail mode, 504 past
        `request_timeout`. A scorer failure under `block` or `allow` is a verdict, not an error.
        """
        items = self._validated(checks)
        return await self._run([(functools.partial(self.guard.acheck, m, s), s) for m, s in items], endpoint)

    async def check_turn(self, turn: Turn, stage: Stage, *, message_index: int, endpoint: str) -> Verdict:
        """One check of a prompt and response (the proxy's output moderation), under the same
        rules and errors as `check_many`."""
        check = functools.partial(self.guard.acheck_turn, turn, stage, message_index=message_index)
        [verdict] = await self._run([(check, stage)], endpoint)
        return verdict

    async def _run(self, checks: Sequence[tuple[Callable[[], Awaitable[Verdict]], Stage]], endpoint: str) -> list[Verdict]:
        self._admit(len(checks))
        self.in_flight += len(checks)
        self.metrics.in_flight.set(self.in_flight)
        tasks = [asyncio.ensure_future(self._one(check, stage, endpoint)) for check, stage in checks]
        try:
            return await asyncio.wait_for(asyncio.gather(*tasks), self.settings.request_timeout)
        except asyncio.TimeoutError:
            raise ApiError(504, f"the check took longer than {self.settings.request_timeout:g} s "
                                "(serve.request_timeout)", code="timeout") from None
        finally:
            for task in tasks:
                task.cancel()
            self.in_flight -= len(checks)
            self.metrics.in_flight.set(self.in_flight)

    async def _one(self, check: Callable[[], Awaitable[Verdict]], stage: Stage, endpoint: str) -> Verdict:
        try:
            verdict = await check()
        except MessageError as exc:  # messages are read before any scoring: nothing was checked
            raise ApiError(400, str(exc), code="invalid_messages") from None
        except ScorerError as exc:  # only a policy whose fail mode is `raise` gets here
            self.metrics.record_raised(endpoint=endpoint, stage=stage.value)
            raise ApiError(503, f"the scorer failed and a policy's fail mode is 'raise': {exc}",
                           code="scorer_error", headers=self._retry()) from None
        self.metrics.record(verdict, endpoint=endpoint)
        return verdict


def served_guard(request: Request) -> ServedGuard:
    """The `ServedGuard` of the app handling `request` (for routes added to `create_app`)."""
    return request.app.state.guardrail
