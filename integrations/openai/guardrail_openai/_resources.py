"""Guarded `chat.completions` and `responses` resources, sync and async.

`create` (and `parse`) check the input, call the wrapped resource with the caller's keyword
arguments untouched, and check the output (or return a moderated stream). Of the wrapped
resource's other attributes only `delete` is forwarded (see `_access`): `stream`, `retrieve`,
`with_raw_response` and the rest raise `AttributeError` and stay reachable through the
client's `unguarded` attribute, on purpose.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import openai

from guardrail import Guard, StreamModerator, Verdict

from guardrail_openai._access import RESOURCE_ATTRIBUTES, not_guarded
from guardrail_openai._common import with_answer
from guardrail_openai._options import GuardOptions
from guardrail_openai._streams import AsyncCannedStream, AsyncGuardedStream, CannedStream, GuardedStream

__all__ = ["AsyncGuardedResource", "GuardedResource"]


class _Shared:
    def __init__(self, inner: Any, codec: Any, guard: Guard, options: GuardOptions) -> None:
        self._inner = inner
        self._codec = codec
        self._guard = guard
        self._options = options
        # plain attributes with the wrapped method's name, docstring and signature
        self.create = self._wrap(inner.create)
        if callable(getattr(inner, "parse", None)):
            self.parse = self._wrap(inner.parse)

    def __getattr__(self, name: str) -> Any:
        if name in ("_inner", "_codec"):  # not set yet: a half-built object must not recurse
            raise AttributeError(name)
        if name in RESOURCE_ATTRIBUTES:
            return getattr(self._inner, name)
        raise not_guarded(self, self._codec.name, self._inner, name)

    def __repr__(self) -> str:
        return f"<guarded {self._codec.name} of {self._inner!r}>"

    def _moderator(self, conversation: list[Any]) -> StreamModerator:
        o = self._options
        return StreamModerator(self._guard, conversation, mode=o.stream_mode, every=o.every, unit=o.unit)

    def _prepare(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[Any], bool, bool]:
        kwargs = dict(kwargs)
        self._codec.validate(kwargs)
        conversation = self._codec.conversation(kwargs)
        streaming = kwargs.get("stream") is True
        return kwargs, conversation, streaming, self._codec.should_check_input(conversation)

    def _output_turns(self, result: Any, conversation: list[Any]) -> list[list[Any]]:
        """The turns the output check scores: `result` is what the caller may see of it."""
        return [with_answer(conversation, text) for text in self._codec.outputs(result)]

    def _apply(self, result: Any, verdicts: list[Verdict]) -> Any:
        refused = {n for n, verdict in enumerate(verdicts) if self._options.refuses(verdict)}
        return self._codec.refuse(result, refused, self._guard.refusal) if refused else result

    def _refusal(self, kwargs: dict[str, Any], streaming: bool, canned: type) -> Any:
        if streaming:
            return canned(self._codec.chunks(kwargs).refusal(self._guard.refusal))
        return self._codec.refusal_result(kwargs, self._guard.refusal)

    def _wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        raise NotImplementedError


def _close_later(future: Future[Any]) -> None:
    """Drop an optimistic call whose input was refused: close its stream whenever it arrives."""
    future.cancel()

    def close(done: Future[Any]) -> None:
        if not done.cancelled() and done.exception() is None and isinstance(done.result(), openai.Stream):
            done.result().close()

    future.add_done_callback(close)


class GuardedResource(_Shared):
    """A guarded sync resource. Use it through `GuardedOpenAI`."""

    def __init__(
        self, inner: Any, codec: Any, guard: Guard, options: GuardOptions, executor: Callable[[], ThreadPoolExecutor]
    ) -> None:
        super().__init__(inner, codec, guard, options)
        self._executor = executor

    def _wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def guarded(**kwargs: Any) -> Any:
            return self._call(method, kwargs)

        return guarded

    def _call(self, method: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        kwargs, conversation, streaming, check = self._prepare(kwargs)
        if check and self._options.optimistic:
            future = self._executor().submit(method, **kwargs)
            try:
                refused = self._options.refuses(self._guard.check_input(conversation))
            except BaseException:
                _close_later(future)
                raise
            if refused:
                _close_later(future)
                return self._refusal(kwargs, streaming, CannedStream)
            result = future.result()
        else:
            if check and self._options.refuses(self._guard.check_input(conversation)):
                return self._refusal(kwargs, streaming, CannedStream)
            result = method(**kwargs)
        if streaming:
            return GuardedStream(result, self._codec.chunks(kwargs), self._moderator(conversation), self._options)
        result = self._codec.visible(result)
        return self._apply(result, [self._guard.check_output(t) for t in self._output_turns(result, conversation)])


async def _discard(task: asyncio.Task[Any]) -> None:
    """Cancel an optimistic call whose input was refused; close its stream if it already came."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is None and isinstance(task.result(), openai.AsyncStream):
        await task.result().close()


class AsyncGuardedResource(_Shared):
    """A guarded async resource. Use it through `AsyncGuardedOpenAI`."""

    def _wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        async def guarded(**kwargs: Any) -> Any:
            return await self._call(method, kwargs)

        return guarded

    async def _call(self, method: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        kwargs, conversation, streaming, check = self._prepare(kwargs)
        if check and self._options.optimistic:
            task = asyncio.ensure_future(method(**kwargs))
            try:
                refused = self._options.refuses(await self._guard.acheck_input(conversation))
            except BaseException:
                await _discard(task)
                raise
            if refused:
                await _discard(task)
                return self._refusal(kwargs, streaming, AsyncCannedStream)
            result = await task
        else:
            if check and self._options.refuses(await self._guard.acheck_input(conversation)):
                return self._refusal(kwargs, streaming, AsyncCannedStream)
            result = await method(**kwargs)
        if streaming:
            return AsyncGuardedStream(result, self._codec.chunks(kwargs), self._moderator(conversation), self._options)
        result = self._codec.visible(result)
        turns = self._output_turns(result, conversation)
        return self._apply(result, [await self._guard.acheck_output(t) for t in turns])
