"""Cross-request batching: concurrent async checks share one scorer call.

Each caller's requests wait in a queue for at most `max_wait_ms` (or until `max_batch` requests
are queued); then the queued callers' requests go to the inner scorer as one batch, and each
caller gets back its own scores, in order. One batch runs at a time per event loop: while it
runs, the next one gathers. At most `max_pending` requests wait in the queue; further callers
wait to be admitted, so a burst cannot grow the queue without bound.

A caller's requests always stay together in one batch (the transformers scorer shares their
common prefix), so a batch holds at most `max_batch` requests unless one caller alone sends more.
Batching changes nothing in a score when the inner scorer is padding-invariant (the transformers
scorer is, to float precision; bf16 rounding can differ by ~1e-2).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from guardrail._exceptions import ConfigError, ScorerError
from guardrail._scoring import ScoreRequest, Scorer, aload_scorer, ascore_raw, load_scorer

__all__ = ["BatchingScorer"]


@dataclass(eq=False)
class _Job:
    requests: list[ScoreRequest]
    future: asyncio.Future[list[float]]
    arrived: float


@dataclass(eq=False)
class _Admission:
    size: int
    future: asyncio.Future[None]


@dataclass(eq=False)
class _LoopQueue:
    """The queue, admission line and dispatcher of one event loop (touched only from that loop)."""

    owner: BatchingScorer
    loop: asyncio.AbstractEventLoop
    jobs: deque[_Job] = field(default_factory=deque)
    queued: int = 0  # requests admitted and not yet taken into a batch
    waiting: deque[_Admission] = field(default_factory=deque)
    arrival: asyncio.Event = field(default_factory=asyncio.Event)
    dispatcher: asyncio.Task[None] | None = None

    # --- admission (back-pressure) ----------------------------------------------------------
    def _fits(self, size: int) -> bool:
        return self.queued == 0 or self.queued + size <= self.owner.max_pending

    async def admit(self, size: int) -> None:
        if not self.waiting and self._fits(size):
            self.queued += size
            return
        ticket = _Admission(size, self.loop.create_future())
        self.waiting.append(ticket)
        try:
            await ticket.future
        except asyncio.CancelledError:
            if ticket.future.done() and not ticket.future.cancelled():
                self.release(size)  # admitted just as we were cancelled: give the room back
            else:
                if ticket in self.waiting:  # a release may already have dropped it
                    self.waiting.remove(ticket)
                self._admit_waiting()
            raise

    def release(self, size: int) -> None:
        self.queued -= size
        self._admit_waiting()

    def _admit_waiting(self) -> None:
        while self.waiting and self._fits(self.waiting[0].size):
            ticket = self.waiting.popleft()
            if not ticket.future.done():
                self.queued += ticket.size
                ticket.future.set_result(None)

    # --- submitting -------------------------------------------------------------------------
    async def submit(self, requests: list[ScoreRequest]) -> list[float]:
        await self.admit(len(requests))
        job = _Job(requests, self.loop.create_future(), self.loop.time())
        self.jobs.append(job)
        self.arrival.set()
        if self.dispatcher is None:
            self.dispatcher = self.loop.create_task(self._dispatch())
        try:
            return await job.future
        except asyncio.CancelledError:
            if job in self.jobs:  # still queued: leave no trace
                self.jobs.remove(job)
                self.release(len(job.requests))
            raise

    # --- dispatching ------------------------------------------------------------------------
    async def _dispatch(self) -> None:
        batch: list[_Job] = []
        try:
            while self.jobs:
                await self._gather()
                batch = self._take()
                if batch:
                    await self._run(batch)
                batch = []
        finally:
            self.dispatcher = None
            for job in [*batch, *self.jobs]:  # only reached with jobs left when cancelled
                job.future.cancel()

    async def _gather(self) -> None:
        """Wait until `max_batch` requests are queued or the oldest has waited `max_wait_ms`."""
        deadline = self.jobs[0].arrived + self.owner.max_wait_ms / 1000
        while self.jobs and self.queued < self.owner.max_batch:
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                return
            self.arrival.clear()
            try:
                await asyncio.wait_for(self.arrival.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[_Job]:
        batch: list[_Job] = []
        size = 0
        while self.jobs:
            job = self.jobs[0]
            if batch and size + len(job.requests) > self.owner.max_batch:
                break
            self.jobs.popleft()
            batch.append(job)
            size += len(job.requests)
        self.release(size)
        return batch

    async def _run(self, batch: list[_Job]) -> None:
        requests = [r for job in batch for r in job.requests]
        try:
            scores = await self.owner._score_batch(requests)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every caller of the batch sees the failure
            for job in batch:
                if not job.future.done():
                    error = ScorerError(f"batch of {len(requests)} requests failed: {exc!r}")
                    error.__cause__ = exc
                    job.future.set_exception(error)
            return
        start = 0
        for job in batch:
            end = start + len(job.requests)
            if not job.future.done():  # a cancelled caller's scores are dropped
                job.future.set_result(scores[start:end])
            start = end


class BatchingScorer:
    """Wrap a scorer so that concurrent `ascore` calls are scored together in micro-batches.

    >>> import asyncio
    >>> from guardrail import Guard
    >>> from guardrail.testing import KeywordScorer
    >>> guard = Guard(["hate"], scorer=BatchingScorer(KeywordScorer({"vermin": 0.97})))
    >>> async def many():
    ...     texts = ["hello", "they are vermin", "bread?"]
    ...     return [v.blocked for v in await asyncio.gather(*(guard.acheck_input(t) for t in texts))]
    >>> asyncio.run(many())
    [False, True, False]

    - `max_batch`: requests per inner call (a caller's requests are never split, so one caller
      with more than this runs as a batch of its own).
    - `max_wait_ms`: the longest the first request of a batch waits for company; 0 takes only
      what queued up while the previous batch ran.
    - `max_pending`: the most requests waiting in the queue; more callers wait to get in.

    `score` (sync) calls the inner scorer directly. The inner scorer runs in a worker thread
    (or through its own `ascore` when it has one). The wrapper binds to whichever event loop
    calls it, so it can be created anywhere and used from several loops in turn.
    """

    def __init__(
        self,
        inner: Scorer,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        max_pending: int = 1024,
    ) -> None:
        if not callable(getattr(inner, "score", None)):
            raise ConfigError(f"inner must be a scorer with a score(requests) method, got {inner!r}")
        for name, value in (("max_batch", max_batch), ("max_pending", max_pending)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(max_wait_ms, bool) or not isinstance(max_wait_ms, (int, float)) or not max_wait_ms >= 0:
            raise ConfigError(f"max_wait_ms must be a number >= 0, got {max_wait_ms!r}")
        self.inner = inner
        self.max_batch = max_batch
        self.max_wait_ms = float(max_wait_ms)
        self.max_pending = max_pending
        self._queues: dict[asyncio.AbstractEventLoop, _LoopQueue] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"BatchingScorer({type(self.inner).__name__}, max_batch={self.max_batch}, "
            f"max_wait_ms={self.max_wait_ms:g}, max_pending={self.max_pending})"
        )

    @property
    def pending(self) -> int:
        """Requests queued (admitted, not yet in a batch) on the running loop; 0 outside one."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return 0
        with self._lock:
            queue = self._queues.get(loop)
        return queue.queued if queue is not None else 0

    @property
    def thresholds(self) -> dict[str, float]:
        """The inner scorer's calibrated thresholds, if it has any: batching changes no score."""
        return dict(getattr(self.inner, "thresholds", None) or {})

    def stream_scorer(self) -> Any:
        """The inner scorer's per-stream scorer, or None: a stream's checks come one at a time,
        so there is nothing to gather, and `Guard.for_stream` uses it directly."""
        make = getattr(self.inner, "stream_scorer", None)
        return None if make is None else make()

    def load(self) -> None:
        load_scorer(self.inner)

    async def aload(self) -> None:
        await aload_scorer(self.inner)

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        return self.inner.score(requests)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[float]:
        if not requests:
            return []
        return await self._queue().submit(list(requests))

    def _queue(self) -> _LoopQueue:
        loop = asyncio.get_running_loop()
        with self._lock:
            queue = self._queues.get(loop)
            if queue is None:
                # A queue refers to its loop, so weak keys would never clear: drop closed loops here.
                for old in [old for old in self._queues if old.is_closed()]:
                    del self._queues[old]
                queue = self._queues[loop] = _LoopQueue(self, loop)
            return queue

    async def _score_batch(self, requests: list[ScoreRequest]) -> list[float]:
        scores = list(await ascore_raw(self.inner, requests))  # type: ignore[call-overload]
        if len(scores) != len(requests):
            raise ScorerError(f"inner scorer returned {len(scores)} scores for {len(requests)} requests")
        return scores
