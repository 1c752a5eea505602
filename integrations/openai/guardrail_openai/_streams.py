"""Guarded streams: upstream chunks in, moderated chunks out, in order.

The `_Relay` is pure: it queues each upstream item with the offset where its text ends (items
without text end where the text before them ends) and lets an item out once the moderator has
released all text up to that offset. Upstream chunks are passed on as they came (never split or
re-built), so in `hold` mode an item leaves only when a passing check covers its whole text.
Tool-call argument deltas are moderated as text, and in `hold` mode every tool-call item (its
header too) waits for the final check over the whole response, so a refused stream never
announces a call. On a violation nothing more leaves; the
stream ends with the codec's refusal (finish reason `content_filter`), or raises `Blocked`.

`GuardedStream` and `AsyncGuardedStream` differ only in `feed` versus `await afeed`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from guardrail import StreamMode, StreamModerator, StreamStep

from guardrail_openai._options import GuardOptions

__all__ = ["AsyncCannedStream", "AsyncGuardedStream", "CannedStream", "GuardedStream"]

T = TypeVar("T")


class Chunks(Protocol):
    def visible(self, item: Any) -> Any: ...

    def text(self, item: Any) -> str: ...

    def is_tool_call(self, item: Any) -> bool: ...

    def refusal(self, refusal: str) -> list[Any]: ...


class _Relay:
    def __init__(self, chunks: Chunks, moderator: StreamModerator, options: GuardOptions) -> None:
        self.chunks = chunks
        self.moderator = moderator
        self.options = options
        self.queue: deque[tuple[Any, float]] = deque()
        self.offset = 0
        self.done = False

    def text(self, item: Any) -> str:
        """Queues what the caller may see of `item`; returns its text, to moderate."""
        item = self.chunks.visible(item)
        text = self.chunks.text(item)
        self.offset += len(text)
        hold_to_end = self.moderator.mode is StreamMode.HOLD and self.chunks.is_tool_call(item)
        self.queue.append((item, math.inf if hold_to_end else self.offset))
        return text

    def after(self, step: StreamStep | None) -> list[Any]:
        """What may leave after the latest item (and `step`, the moderator's answer to it)."""
        if step is not None and step.stopped:
            return self._stop(step)
        out = []
        while self.queue and self.queue[0][1] <= self.moderator.released:
            out.append(self.queue.popleft()[0])
        return out

    def finish(self, step: StreamStep) -> list[Any]:
        if step.stopped:
            return self._stop(step)
        out = [item for item, _ in self.queue]  # the final check passed: everything may go
        self.queue.clear()
        self.done = True
        if step.verdict is not None:
            self.options.refuses(step.verdict)  # reports flags; an allowed verdict never refuses
        return out

    def _stop(self, step: StreamStep) -> list[Any]:
        self.done = True
        self.queue.clear()
        self.options.refuses(step.verdict)  # raises Blocked when asked to
        return self.chunks.refusal(self.moderator.refusal)


class _Base(Generic[T]):
    def __init__(self, upstream: Any, chunks: Chunks, moderator: StreamModerator, options: GuardOptions) -> None:
        self.upstream = upstream
        self.moderator = moderator
        self._relay = _Relay(chunks, moderator, options)

    def __getattr__(self, name: str) -> Any:
        if name == "upstream":  # not set yet: a half-built object must not recurse
            raise AttributeError(name)
        return getattr(self.upstream, name)


class GuardedStream(_Base[T]):
    """Iterates the upstream `Stream` and yields only what the moderator released.

    >>> with guarded.chat.completions.create(model="m", messages=msgs, stream=True) as stream:  # doctest: +SKIP
    ...     for chunk in stream:
    ...         print(chunk.choices[0].delta.content or "", end="")
    """

    def __init__(self, upstream: Any, chunks: Chunks, moderator: StreamModerator, options: GuardOptions) -> None:
        super().__init__(upstream, chunks, moderator, options)
        self._iterator = self._run()

    def _run(self) -> Generator[T, None, None]:
        relay, moderator = self._relay, self.moderator
        try:
            for item in self.upstream:
                text = relay.text(item)
                yield from relay.after(moderator.feed(text) if text else None)
                if relay.done:
                    return
            yield from relay.finish(moderator.finish())
        finally:
            self.upstream.close()

    def __iter__(self) -> Iterator[T]:
        return self._iterator

    def __next__(self) -> T:
        return next(self._iterator)

    def close(self) -> None:
        self._iterator.close()
        self.upstream.close()

    def __enter__(self) -> GuardedStream[T]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncGuardedStream(_Base[T]):
    """The async twin of `GuardedStream`: `async for`, `async with`, `await close()`."""

    def __init__(self, upstream: Any, chunks: Chunks, moderator: StreamModerator, options: GuardOptions) -> None:
        super().__init__(upstream, chunks, moderator, options)
        self._iterator = self._run()

    async def _run(self) -> AsyncGenerator[T, None]:
        relay, moderator = self._relay, self.moderator
        try:
            async for item in self.upstream:
                text = relay.text(item)
                for out in relay.after(await moderator.afeed(text) if text else None):
                    yield out
                if relay.done:
                    return
            for out in relay.finish(await moderator.afinish()):
                yield out
        finally:
            await self.upstream.close()

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterator

    async def __anext__(self) -> T:
        return await self._iterator.__anext__()

    async def close(self) -> None:
        await self._iterator.aclose()
        await self.upstream.close()

    async def __aenter__(self) -> AsyncGuardedStream[T]:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()


class CannedStream:
    """The stream returned when the input is refused before OpenAI is called: the refusal."""

    def __init__(self, items: list[Any]) -> None:
        self._iterator = iter(items)

    def __iter__(self) -> Iterator[Any]:
        return self._iterator

    def __next__(self) -> Any:
        return next(self._iterator)

    def close(self) -> None:
        self._iterator = iter(())

    def __enter__(self) -> CannedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncCannedStream:
    """The async twin of `CannedStream`."""

    def __init__(self, items: list[Any]) -> None:
        self._items = deque(items)

    def __aiter__(self) -> AsyncCannedStream:
        return self

    async def __anext__(self) -> Any:
        if not self._items:
            raise StopAsyncIteration
        return self._items.popleft()

    async def close(self) -> None:
        self._items.clear()

    async def __aenter__(self) -> AsyncCannedStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
