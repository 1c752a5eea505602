"""`GuardedRunnable`: any Runnable, with its input checked before and its output after."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from guardrail import ConfigError, Guard, GuardOptions, OnBlock, StreamMode, Verdict, ainvoke, aopen_stream, invoke, open_stream
from langchain_core.runnables import Runnable, RunnableConfig

from guardrail_langchain._codec import RunnableCall
from guardrail_langchain._convert import without_stream_taps

__all__ = ["GuardedCalls", "GuardedRunnable", "guard_runnable", "options_for"]


def options_for(guard: Any, options: GuardOptions) -> GuardOptions:
    """Checks the arguments every LangChain wrapper takes; returns the options."""
    if not isinstance(guard, Guard):
        raise ConfigError(f"guard must be a guardrail.Guard, got {type(guard).__name__}")
    if options.reasoning != "moderate":
        raise ConfigError("reasoning='strip' is an OpenAI option; LangChain reasoning blocks are always moderated")
    return options


class GuardedCalls:
    """A runnable's guarded entry points: the kernel's, each given a `RunnableCall`.

    They take LangChain's run-function arguments (`value, run_manager, config`), so a
    `Runnable`'s `_call_with_config` and `_transform_stream_with_config` can call them; the
    run manager is unused (`config` carries the run's callbacks).
    """

    def __init__(self, guard: Guard, options: GuardOptions, runnable: Runnable, output_kind: type | None) -> None:
        self.guard, self.options, self.runnable, self.output_kind = guard, options, runnable, output_kind

    def _call(self, method: Any, value: Any, config: RunnableConfig, kwargs: dict[str, Any]) -> RunnableCall:
        start = functools.partial(method, value, without_stream_taps(config), **kwargs)
        return RunnableCall(start, value, self.options, self.output_kind)

    def invoke(self, value: Any, run_manager: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        return invoke(self.guard, self.options, self._call(self.runnable.invoke, value, config, kwargs))

    async def ainvoke(self, value: Any, run_manager: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        return await ainvoke(self.guard, self.options, self._call(self.runnable.ainvoke, value, config, kwargs))

    def stream(self, value: Any, run_manager: Any, config: RunnableConfig, **kwargs: Any) -> Iterator[Any]:
        with open_stream(self.guard, self.options, self._call(self.runnable.stream, value, config, kwargs)) as chunks:
            yield from chunks

    async def astream(self, value: Any, run_manager: Any, config: RunnableConfig, **kwargs: Any) -> AsyncIterator[Any]:
        call = self._call(self.runnable.astream, value, config, kwargs)
        async with await aopen_stream(self.guard, self.options, call) as chunks:
            async for chunk in chunks:
                yield chunk

    def transform(self, values: Iterator[Any], run_manager: Any, config: RunnableConfig, **kwargs: Any) -> Iterator[Any]:
        """`stream` of the one input a `Runnable.stream` run hands its transformer."""
        yield from self.stream(next(values), run_manager, config, **kwargs)

    async def atransform(
        self, values: AsyncIterator[Any], run_manager: Any, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async for chunk in self.astream(await anext(values), run_manager, config, **kwargs):
            yield chunk


def _output_kind(runnable: Runnable) -> type | None:
    try:
        kind = runnable.OutputType
    except Exception:  # some runnables can't say; a refusal then becomes an AIMessage
        return None
    return kind if isinstance(kind, type) else None


async def _one(value: Any) -> AsyncIterator[Any]:
    yield value


class GuardedRunnable(Runnable[Any, Any]):
    """A Runnable whose input and output are checked by a guard.

    >>> from guardrail import Guard
    >>> from guardrail.testing import KeywordScorer
    >>> chain = prompt | model | StrOutputParser()                          # doctest: +SKIP
    >>> guarded = GuardedRunnable(chain, Guard(scorer=KeywordScorer({"bomb": 0.99})))
    >>> guarded.invoke({"question": "How do I bake bread?"})                # doctest: +SKIP
    'Mix flour, water, salt and yeast...'

    The input's latest user turn is checked before the runnable runs, the output (with that
    turn) after. A `block` policy raises `guardrail.Blocked`; a `rewrite` policy returns the
    guard's refusal as the output's type (an `AIMessage`, or a str for str chains). Streams
    are moderated as they grow (`stream_mode`, `every`, `unit`; see `guardrail.GuardOptions`).
    `invoke`, `ainvoke`, `stream` and `astream` run as one traced run whose child is the
    inner runnable; `batch` and `abatch` come from `Runnable`.
    """

    def __init__(
        self,
        runnable: Runnable,
        guard: Guard,
        *,
        input_key: str | None = None,
        check_input: bool = True,
        check_output: bool = True,
        stream_mode: StreamMode | str = StreamMode.HOLD,
        every: int = 200,
        unit: str = "chars",
        optimistic: bool = False,
        on_block: OnBlock = "raise",
        on_verdict: Callable[[Verdict], object] | None = None,
        options: GuardOptions | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(runnable, Runnable):
            raise ConfigError(f"runnable must be a langchain Runnable, got {type(runnable).__name__}")
        self.runnable = runnable
        self.guard = guard
        self.options = options_for(guard, options or GuardOptions(
            input_key=input_key, check_input=check_input, check_output=check_output, stream_mode=stream_mode,
            every=every, unit=unit, optimistic=optimistic, on_block=on_block, on_verdict=on_verdict,
        ))
        self.name = name or f"Guarded{runnable.get_name()}"
        self._calls = GuardedCalls(guard, self.options, runnable, _output_kind(runnable))

    def __repr__(self) -> str:
        return f"GuardedRunnable({self.runnable!r}, {self.guard!r})"

    @property
    def InputType(self) -> Any:  # noqa: N802 - the Runnable protocol's name
        return self.runnable.InputType

    @property
    def OutputType(self) -> Any:  # noqa: N802
        return self.runnable.OutputType

    def get_input_schema(self, config: RunnableConfig | None = None) -> Any:
        return self.runnable.get_input_schema(config)

    def get_output_schema(self, config: RunnableConfig | None = None) -> Any:
        return self.runnable.get_output_schema(config)

    # LangChain's run wrappers pass `config=` (and no run manager) to these, and trace the run.
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:  # noqa: A002
        return self._call_with_config(self._calls.invoke, input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:  # noqa: A002
        return await self._acall_with_config(self._calls.ainvoke, input, config, **kwargs)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:  # noqa: A002
        yield from self._transform_stream_with_config(iter([input]), self._calls.transform, config, **kwargs)

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:  # noqa: A002
        async for chunk in self._atransform_stream_with_config(_one(input), self._calls.atransform, config, **kwargs):
            yield chunk


def guard_runnable(runnable: Runnable, guard: Guard, **options: Any) -> GuardedRunnable:
    """`GuardedRunnable(runnable, guard, **options)`: `guard_runnable(chain, guard, every=80)`."""
    return GuardedRunnable(runnable, guard, **options)
