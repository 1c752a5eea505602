"""The kernel's drivers: they carry a guarded call's steps out, synchronously or with `await`.

`invoke` / `ainvoke` run a call whole, `open_stream` / `aopen_stream` hand back a moderated
stream; `optimistic` mode starts the call in the background (a daemon thread, or a task) and
drops it if the input is refused. What the steps are and what a verdict means is in `_kernel`.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import types
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from guardrail._guard import Guard
from guardrail._kernel import END, Call, Check, Emit, GuardOptions, Join, Start, Step, _Flow, _Machine, _Refused
from guardrail._relay import AsyncGuardedStream, GuardedStream, aclose_source, close_source

__all__ = ["ainvoke", "aopen_stream", "invoke", "open_stream"]


# --- optimistic mode: one background job, sync (a thread) or async (a task) ------------------


def _first_pulled(result: Any) -> Any:
    """A lazy generator has started nothing until pulled: starting it means pulling one item."""
    if isinstance(result, types.GeneratorType):
        first = next(result, END)
        return _Pulled(result, first)
    return result


async def _afirst_pulled(result: Any) -> Any:
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, types.AsyncGeneratorType):
        try:
            first = await anext(result)
        except StopAsyncIteration:
            first = END
        return _Pulled(result, first)
    return result


@dataclass
class _Pulled:
    """A generator whose first item was pulled in the background."""

    source: Any
    first: Any


def _unpulled(result: Any) -> Any:
    return result.source if isinstance(result, _Pulled) else result


def _in_thread(fn: Callable[[], Any]) -> Future[Any]:
    """Run `fn` in a daemon thread with the caller's context vars; its result as a future.

    A daemon thread, not a pool: a call that hangs can't hold the process open at exit.
    """
    future: Future[Any] = Future()
    context = contextvars.copy_context()

    def run() -> None:
        try:
            future.set_result(context.run(lambda: _first_pulled(fn())))
        except BaseException as exc:  # handed to whoever joins, if anyone does
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True, name="guardrail-optimistic").start()
    return future


def _drop_later(future: Future[Any]) -> None:
    """Drop a background call: close what it returns whenever it arrives."""
    future.add_done_callback(lambda done: close_source(_unpulled(done.result())) if done.exception() is None else None)


async def _adrop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is None:
        await aclose_source(_unpulled(task.result()))


# --- the drivers ----------------------------------------------------------------------------


class _Driver:
    """Carries out a machine's steps, synchronously."""

    def __init__(self, flow: _Flow) -> None:
        self.flow = flow
        self.pending: Future[Any] | None = None
        self.items: Iterator[Any] | None = None

    def answer(self, step: Step) -> Any:
        if isinstance(step, Check):
            if step.turn is None:
                return self.flow.guard.check(step.messages, step.stage)
            return self.flow.guard.check_turn(step.turn, step.stage, message_index=step.index)
        if isinstance(step, Start):
            if step.background:
                self.pending = _in_thread(self.flow.call.start)
                return None
            return self.flow.call.start()
        if isinstance(step, Join):
            assert self.pending is not None
            pending, self.pending = self.pending, None
            return pending.result()
        assert self.items is not None
        return next(self.items, END)

    def run(self, machine: _Machine) -> Any:
        reply = None
        try:
            while True:
                reply = self.answer(machine.send(reply))
        except StopIteration as done:
            return done.value
        finally:
            if self.pending is not None:  # refused, or failed: the background call is dropped
                _drop_later(self.pending)

    def relay(self, machine: Generator[Step | Emit, Any, None]) -> Iterator[Any]:
        reply = None
        while True:
            try:
                step = machine.send(reply)
            except StopIteration:
                return
            if isinstance(step, Emit):
                yield from step.items
                reply = None
            else:
                reply = self.answer(step)


class _AsyncDriver:
    """Carries out a machine's steps, awaiting the guard and the call."""

    def __init__(self, flow: _Flow) -> None:
        self.flow = flow
        self.pending: asyncio.Task[Any] | None = None
        self.items: AsyncIterator[Any] | None = None

    async def answer(self, step: Step) -> Any:
        if isinstance(step, Check):
            if step.turn is None:
                return await self.flow.guard.acheck(step.messages, step.stage)
            return await self.flow.guard.acheck_turn(step.turn, step.stage, message_index=step.index)
        if isinstance(step, Start):
            if step.background:
                self.pending = asyncio.ensure_future(_afirst_pulled(self.flow.call.start()))
                return None
            result = self.flow.call.start()
            return await result if inspect.isawaitable(result) else result
        if isinstance(step, Join):
            assert self.pending is not None
            pending, self.pending = self.pending, None
            return await pending
        assert self.items is not None
        return await anext(self.items, END)

    async def run(self, machine: _Machine) -> Any:
        reply = None
        try:
            while True:
                reply = await self.answer(machine.send(reply))
        except StopIteration as done:
            return done.value
        finally:
            if self.pending is not None:
                await _adrop(self.pending)

    async def relay(self, machine: Generator[Step | Emit, Any, None]) -> AsyncIterator[Any]:
        reply = None
        while True:
            try:
                step = machine.send(reply)
            except StopIteration:
                return
            if isinstance(step, Emit):
                for item in step.items:
                    yield item
                reply = None
            else:
                reply = await self.answer(step)


def invoke(guard: Guard, options: GuardOptions, call: Call) -> Any:
    """Run `call` guarded: its result, or its refusal; raises `Blocked` when asked to."""
    flow = _Flow(guard, options, call)
    driver = _Driver(flow)
    result = driver.run(flow.begin())
    if isinstance(result, _Refused):
        return flow.refusal(result, streaming=False)
    return driver.run(flow.finish(result))


async def ainvoke(guard: Guard, options: GuardOptions, call: Call) -> Any:
    """The async twin of `invoke`: `call.start()` may return an awaitable."""
    flow = _Flow(guard, options, call)
    driver = _AsyncDriver(flow)
    result = await driver.run(flow.begin())
    if isinstance(result, _Refused):
        return flow.refusal(result, streaming=False)
    return await driver.run(flow.finish(result))


def open_stream(guard: Guard, options: GuardOptions, call: Call) -> GuardedStream:
    """Check the input and start the call now; the moderated stream of its chunks.

    The input check runs before this returns (so a blocked input raises here), the output is
    moderated as the caller iterates. Wrap in a generator to defer both.
    """
    flow = _Flow(guard, options, call)
    driver = _Driver(flow)
    result = driver.run(flow.begin())
    if isinstance(result, _Refused):
        return GuardedStream(iter(flow.refusal(result, streaming=True)), None)
    driver.items = _items(result)
    upstream = _unpulled(result)
    return GuardedStream(driver.relay(flow.moderate()), upstream, feed=driver.items)


async def aopen_stream(guard: Guard, options: GuardOptions, call: Call) -> AsyncGuardedStream:
    """The async twin of `open_stream`: `call.start()` may return an awaitable of a stream."""
    flow = _Flow(guard, options, call)
    driver = _AsyncDriver(flow)
    result = await driver.run(flow.begin())
    if isinstance(result, _Refused):
        return AsyncGuardedStream(_aiter_list(flow.refusal(result, streaming=True)), None)
    driver.items = _aitems(result)
    upstream = _unpulled(result)
    return AsyncGuardedStream(driver.relay(flow.moderate()), upstream, feed=driver.items)


def _items(result: Any) -> Iterator[Any]:
    if isinstance(result, _Pulled):
        if result.first is not END:
            yield result.first
        result = result.source
    yield from result


async def _aitems(result: Any) -> AsyncIterator[Any]:
    if isinstance(result, _Pulled):
        if result.first is not END:
            yield result.first
        result = result.source
    async for item in result:
        yield item


async def _aiter_list(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item
