"""One stream relay: upstream chunks in, the chunks a `StreamModerator` released out, in order.

Sans-IO. The relay queues each chunk with the span of response text it carries and lets it out
once the moderator has released all of that text, so in `hold` mode a chunk leaves only when a
passing check covers it. Chunks are passed on as they came; a reader that can cut a chunk
(`split`) lets a chunk out in part when only part of its text is released. A chunk the reader
marks `held` (a tool call, a structured value) waits for the final check whatever the mode,
and so does everything behind it: order is kept. Adapters write only the `ChunkReader`.

`GuardedStream` and `AsyncGuardedStream` are what callers iterate: the relayed chunks, with the
upstream stream's attributes and its closing.
"""

from __future__ import annotations

import inspect
import math
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

from guardrail._streaming import StreamModerator

__all__ = ["AsyncGuardedStream", "ChunkReader", "GuardedStream", "Relay", "aclose_source", "close_source"]


class ChunkReader(Protocol):
    """How a relay reads one stream's chunks, in an adapter's own types. One per stream.

    `text` and `refusal` are required; subclass this protocol to inherit the other methods'
    defaults (chunks pass as they are, whole, none held, nothing extra).
    """

    def text(self, item: Any) -> str:
        """The response text the chunk adds, to moderate ("" for none)."""
        ...

    def refusal(self, refusal: str, *, after_text: bool) -> list[Any] | None:
        """The chunks that end a refused stream (`after_text`: some text already went out);
        None when the stream can't carry a refusal, which then raises `Blocked`."""
        ...

    def visible(self, item: Any) -> Any:
        """The chunk as the caller may see it (e.g. without stripped reasoning)."""
        return item

    def held(self, item: Any) -> bool:
        """True when the chunk must wait for the final check (tool calls, structured values)."""
        return False

    def split(self, item: Any, n: int) -> tuple[Any, Any] | None:
        """The chunk cut after `n` characters of its text, or None when it can't be cut."""
        return None

    def extra_text(self) -> str:
        """Text the chunks carry outside their deltas (tool calls, structured values), checked
        once at the end with the whole response; "" when there is none."""
        return ""

    def last(self, items: list[Any]) -> list[Any]:
        """The chunks the final check released, as they go out (a reader may merge them)."""
        return items


class Relay:
    """`accept` each upstream chunk; after each moderator step, `released()` says what may go."""

    def __init__(self, reader: ChunkReader, moderator: StreamModerator) -> None:
        self.reader = reader
        self.moderator = moderator
        self.queue: deque[tuple[Any, int, float]] = deque()  # (chunk, text start, text end)
        self.offset = 0
        self.done = False

    def accept(self, item: Any) -> str:
        """Queues what the caller may see of `item`; returns its text, to moderate."""
        item = self.reader.visible(item)
        text = self.reader.text(item)
        start, self.offset = self.offset, self.offset + len(text)
        self.queue.append((item, start, math.inf if self.reader.held(item) else self.offset))
        return text

    def released(self) -> list[Any]:
        """The queued chunks whose text the moderator has released, in order."""
        limit, out = self.moderator.released, []
        while self.queue:
            item, start, end = self.queue[0]
            if end <= limit:
                out.append(self.queue.popleft()[0])
                continue
            parts = self.reader.split(item, limit - start) if start < limit < end < math.inf else None
            if parts is not None:
                out.append(parts[0])
                self.queue[0] = (parts[1], limit, end)
            break
        return out

    def rest(self) -> list[Any]:
        """Everything still queued: the final check passed."""
        out = self.reader.last([item for item, _, _ in self.queue])
        self.stop()
        return out

    def stop(self) -> None:
        self.queue.clear()
        self.done = True


def close_source(result: Any) -> None:
    """Close a stream, a generator or whatever a call returned, if it can be closed."""
    close = getattr(result, "close", None)
    if callable(close):
        close()


async def aclose_source(result: Any) -> None:
    """The async twin of `close_source`: `aclose()`, else `close()`, awaited when it must be."""
    close = getattr(result, "aclose", None) or getattr(result, "close", None)
    if callable(close):
        closing = close()
        if inspect.isawaitable(closing):
            await closing


class GuardedStream:
    """A moderated stream: iterate it (or use it as a context manager); closing it closes the
    upstream. Other attributes forward to the upstream stream (e.g. `response`).

    >>> with client.chat.completions.create(model="m", messages=msgs, stream=True) as stream:  # doctest: +SKIP
    ...     for chunk in stream:
    ...         print(chunk.choices[0].delta.content or "", end="")
    """

    def __init__(self, items: Iterator[Any], upstream: Any, *, feed: Iterator[Any] | None = None) -> None:
        self.upstream = upstream
        self._items = items
        self._feed = feed

    def __getattr__(self, name: str) -> Any:
        if name == "upstream":  # not set yet: a half-built object must not recurse
            raise AttributeError(name)
        return getattr(self.upstream, name)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._items)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for part in (self._items, self._feed):
            close_source(part)
        close_source(self.upstream)

    def __enter__(self) -> GuardedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncGuardedStream:
    """The async twin of `GuardedStream`: `async for`, `async with`, `await close()`."""

    def __init__(self, items: AsyncIterator[Any], upstream: Any, *, feed: AsyncIterator[Any] | None = None) -> None:
        self.upstream = upstream
        self._items = items
        self._feed = feed

    def __getattr__(self, name: str) -> Any:
        if name == "upstream":
            raise AttributeError(name)
        return getattr(self.upstream, name)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            return await anext(self._items)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for part in (self._items, self._feed):
            await aclose_source(part)
        await aclose_source(self.upstream)

    async def __aenter__(self) -> AsyncGuardedStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

