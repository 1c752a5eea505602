"""`GuardedRunnable`: any Runnable, with its input checked before and its output after."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from guardrail import Guard, StreamMode
from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.runnables import Runnable, RunnableConfig

from guardrail_langchain import _flow
from guardrail_langchain._convert import without_stream_taps
from guardrail_langchain._options import GuardOptions

__all__ = ["GuardedRunnable", "guard_runnable"]


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
    are moderated as they grow (`stream_mode`, `every`, `unit`; see `GuardOptions`).
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
        name: str | None = None,
    ) -> None:
        if not isinstance(runnable, Runnable):
            raise TypeError(f"runnable must be a langchain Runnable, got {type(runnable).__name__}")
        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a guardrail.Guard, got {type(guard).__name__}")
        self.runnable = runnable
        self.guard = guard
        self.options = GuardOptions(
            input_key=input_key,
            check_input=check_input,
            check_output=check_output,
            stream_mode=stream_mode,  # type: ignore[arg-type]  # validated there
            every=every,
            unit=unit,
            optimistic=optimistic,
        )
        self.name = name or f"Guarded{runnable.get_name()}"
        self._guarding = _flow.Guarding(guard, self.options, _output_kind(runnable))

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

    def _invoke(
        self, value: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig, **kwargs: Any
    ) -> Any:
        return _flow.invoke(self._guarding, self.runnable, value, without_stream_taps(config), **kwargs)

    async def _ainvoke(
        self,
        value: Any,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Any:
        config = without_stream_taps(config)
        return await _flow.ainvoke(self._guarding, self.runnable, value, config, **kwargs)

    def _stream(
        self,
        values: Iterator[Any],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Iterator[Any]:
        value = next(values)
        yield from _flow.stream(self._guarding, self.runnable, value, without_stream_taps(config), **kwargs)

    async def _astream(
        self,
        values: AsyncIterator[Any],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        value = await anext(values)
        config = without_stream_taps(config)
        async for chunk in _flow.astream(self._guarding, self.runnable, value, config, **kwargs):
            yield chunk

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:  # noqa: A002
        return self._call_with_config(self._invoke, input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:  # noqa: A002
        return await self._acall_with_config(self._ainvoke, input, config, **kwargs)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:  # noqa: A002
        yield from self._transform_stream_with_config(iter([input]), self._stream, config, **kwargs)

    async def astream(
        self,
        input: Any,  # noqa: A002
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        async for chunk in self._atransform_stream_with_config(_one(input), self._astream, config, **kwargs):
            yield chunk


def guard_runnable(runnable: Runnable, guard: Guard, **options: Any) -> GuardedRunnable:
    """`GuardedRunnable(runnable, guard, **options)`: `guard_runnable(chain, guard, every=80)`."""
    return GuardedRunnable(runnable, guard, **options)
