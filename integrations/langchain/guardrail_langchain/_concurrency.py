"""Run generation beside the input check (optimistic mode), and stop it when told.

Sync generation runs in a daemon thread (a thread can't be cancelled: on a block its result is
discarded and its stream closed at the next chunk); async generation runs in a task that is
cancelled. Nothing here releases anything: callers read results only after the check passed.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any

__all__ = ["AsyncPrefetch", "Prefetch", "aclose", "cancel", "close", "start_task", "start_thread"]

_END = object()


def start_thread(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
    """Call `fn` in a daemon thread (with the caller's context vars); its result as a future."""
    future: Future = Future()
    context = contextvars.copy_context()

    def run() -> None:
        try:
            future.set_result(context.run(fn, *args, **kwargs))
        except BaseException as exc:  # handed to whoever reads the future, if anyone does
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True, name="guardrail-optimistic").start()
    return future


def start_task(coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
    return asyncio.ensure_future(coro)


async def cancel(task: asyncio.Task | None) -> None:
    """Cancel `task` and wait until it has stopped."""
    if task is None:
        return
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio doesn't log it as never retrieved


def close(iterator: Any) -> None:
    method = getattr(iterator, "close", None)
    if method is not None:
        method()


async def aclose(iterator: Any) -> None:
    method = getattr(iterator, "aclose", None)
    if method is not None:
        await method()


class Prefetch:
    """Iterate `upstream` in a thread from now on; hand its items out in order when asked."""

    def __init__(self, upstream: Iterator[Any]) -> None:
        self._items: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        context = contextvars.copy_context()
        threading.Thread(
            target=context.run, args=(self._pump, upstream), daemon=True, name="guardrail-prefetch"
        ).start()

    def _pump(self, upstream: Iterator[Any]) -> None:
        try:
            for item in upstream:
                if self._stop.is_set():
                    break
                self._items.put((item, None))
            self._items.put((_END, None))
        except BaseException as exc:
            self._items.put((_END, exc))
        finally:
            close(upstream)

    def __iter__(self) -> Prefetch:
        return self

    def __next__(self) -> Any:
        item, error = self._items.get()
        if error is not None:
            raise error
        if item is _END:
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop pulling from upstream (at its next chunk) and close it."""
        self._stop.set()


class AsyncPrefetch:
    """Iterate `upstream` in a task from now on; `aclose` cancels it."""

    def __init__(self, upstream: AsyncIterator[Any]) -> None:
        self._items: asyncio.Queue = asyncio.Queue()
        self._task = start_task(self._pump(upstream))

    async def _pump(self, upstream: AsyncIterator[Any]) -> None:
        try:
            async for item in upstream:
                self._items.put_nowait((item, None))
            self._items.put_nowait((_END, None))
        except Exception as exc:
            self._items.put_nowait((_END, exc))
        finally:
            await aclose(upstream)

    def __aiter__(self) -> AsyncPrefetch:
        return self

    async def __anext__(self) -> Any:
        item, error = await self._items.get()
        if error is not None:
            raise error
        if item is _END:
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        await cancel(self._task)
