"""Guarded calls of a Runnable: invoke and stream, sync and async.

Decisions live in `Guarding` (pure: verdict in, refusal or output out) and in `StreamRelay`.
The sync and async functions below differ only in how they call the guard and the runnable.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from guardrail import Blocked, Guard, MessageError, Verdict
from langchain_core.runnables import Runnable, RunnableConfig

from guardrail_langchain._concurrency import (
    AsyncPrefetch,
    Prefetch,
    aclose,
    cancel,
    close,
    start_task,
    start_thread,
)
from guardrail_langchain._convert import input_messages, output_text, refusal_chunk, refusal_output
from guardrail_langchain._options import GuardOptions
from guardrail_langchain._relay import StreamRelay

__all__ = ["Guarding", "ainvoke", "astream", "invoke", "stream"]


@dataclass(frozen=True)
class Guarding:
    """A guard, its options, and the type a refusal takes before any output exists."""

    guard: Guard
    options: GuardOptions
    output_kind: type | None = None

    def messages(self, value: Any) -> list[dict[str, Any]]:
        """The conversation to check; `MessageError` before anything runs if the input check
        would have no user message to score (an optimistic call would already have started)."""
        messages = input_messages(value, input_key=self.options.input_key)
        if self.options.check_input and not any(m.get("role") == "user" for m in messages):
            raise MessageError("the input has no user message (HumanMessage) to check, so nothing is sent")
        return messages

    def on_input(self, verdict: Verdict, *, streaming: bool = False) -> Any:
        """`None` to go on; the refusal to return instead (rewrite); raises `Blocked`."""
        verdict.raise_for_block()
        if not verdict.rewritten:
            return None
        make = refusal_chunk if streaming else refusal_output
        refusal = make(self.output_kind, self.guard.refusal)
        if refusal is None:
            raise Blocked(verdict)
        return refusal

    def output_messages(self, messages: list[Any], output: Any) -> list[Any]:
        return [*messages, {"role": "assistant", "content": output_text(output)}]

    def on_output(self, verdict: Verdict, output: Any) -> Any:
        """The output, or its refusal (rewrite); raises `Blocked`."""
        verdict.raise_for_block()
        if not verdict.rewritten:
            return output
        refusal = refusal_output(None, self.guard.refusal, like=output)
        if refusal is None:  # a structured output can't carry a refusal
            raise Blocked(verdict)
        return refusal

    def relay(self, messages: list[Any]) -> StreamRelay:
        return StreamRelay(self.guard, messages, self.options)


def invoke(g: Guarding, runnable: Runnable, value: Any, config: RunnableConfig, **kwargs: Any) -> Any:
    messages = g.messages(value)
    pending = start_thread(runnable.invoke, value, config, **kwargs) if g.options.optimistic else None
    if g.options.check_input:
        refusal = g.on_input(g.guard.check_input(messages))
        if refusal is not None:
            return refusal  # an optimistic generation is discarded: its thread ends on its own
    output = pending.result() if pending is not None else runnable.invoke(value, config, **kwargs)
    if not g.options.check_output:
        return output
    return g.on_output(g.guard.check_output(g.output_messages(messages, output)), output)


async def ainvoke(
    g: Guarding, runnable: Runnable, value: Any, config: RunnableConfig, **kwargs: Any
) -> Any:
    messages = g.messages(value)
    task = start_task(runnable.ainvoke(value, config, **kwargs)) if g.options.optimistic else None
    try:
        refusal = g.on_input(await g.guard.acheck_input(messages)) if g.options.check_input else None
    except BaseException:
        await cancel(task)
        raise
    if refusal is not None:
        await cancel(task)  # the optimistic generation stops here
        return refusal
    output = await task if task is not None else await runnable.ainvoke(value, config, **kwargs)
    if not g.options.check_output:
        return output
    return g.on_output(await g.guard.acheck_output(g.output_messages(messages, output)), output)


def _moderate(g: Guarding, relay: StreamRelay, upstream: Iterator[Any]) -> Iterator[Any]:
    for chunk in upstream:
        delta = relay.accept(chunk)
        if delta is not None:
            yield from relay.release(relay.moderator.feed(delta))
            if relay.stopped:
                return
    if relay.fed:
        yield from relay.release(relay.moderator.finish())
        if relay.stopped:
            return
    extra = relay.final_messages()
    yield from relay.end(g.guard.check_output(extra) if extra is not None else None)


async def _amoderate(g: Guarding, relay: StreamRelay, upstream: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    async for chunk in upstream:
        delta = relay.accept(chunk)
        if delta is not None:
            for out in relay.release(await relay.moderator.afeed(delta)):
                yield out
            if relay.stopped:
                return
    if relay.fed:
        for out in relay.release(await relay.moderator.afinish()):
            yield out
        if relay.stopped:
            return
    extra = relay.final_messages()
    for out in relay.end(await g.guard.acheck_output(extra) if extra is not None else None):
        yield out


def stream(
    g: Guarding, runnable: Runnable, value: Any, config: RunnableConfig, **kwargs: Any
) -> Iterator[Any]:
    messages = g.messages(value)
    upstream: Any = None
    if g.options.optimistic:
        upstream = Prefetch(runnable.stream(value, config, **kwargs))
    try:
        if g.options.check_input:
            refusal = g.on_input(g.guard.check_input(messages), streaming=True)
            if refusal is not None:
                yield refusal
                return
        if upstream is None:
            upstream = runnable.stream(value, config, **kwargs)
        if g.options.check_output:
            yield from _moderate(g, g.relay(messages), upstream)
        else:
            yield from upstream
    finally:
        if upstream is not None:
            close(upstream)  # stops generation early on a block or a stop


async def astream(
    g: Guarding, runnable: Runnable, value: Any, config: RunnableConfig, **kwargs: Any
) -> AsyncIterator[Any]:
    messages = g.messages(value)
    upstream: Any = None
    if g.options.optimistic:
        upstream = AsyncPrefetch(runnable.astream(value, config, **kwargs))
    try:
        if g.options.check_input:
            refusal = g.on_input(await g.guard.acheck_input(messages), streaming=True)
            if refusal is not None:
                yield refusal
                return
        if upstream is None:
            upstream = runnable.astream(value, config, **kwargs)
        if not g.options.check_output:
            async for chunk in upstream:
                yield chunk
            return
        moderated = _amoderate(g, g.relay(messages), upstream)
        try:
            async for chunk in moderated:
                yield chunk
        finally:
            await moderated.aclose()
    finally:
        if upstream is not None:
            await aclose(upstream)  # stops generation early on a block or a stop
