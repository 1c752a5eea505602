"""`GuardedChatModel`: a chat model that checks what goes into and comes out of another one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal

from guardrail import Guard, GuardOptions, MessageError
from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput, ModelProfile
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig, ensure_config
from langchain_core.tools import BaseTool
from pydantic import ConfigDict, PrivateAttr

from guardrail_langchain._convert import CONVERSION_ERRORS, without_stream_taps
from guardrail_langchain._runnable import GuardedCalls, GuardedRunnable, options_for

__all__ = ["GuardedChatModel"]


def _child_config(run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None) -> RunnableConfig:
    """Callbacks for the inner model: a child of this model's run (LLM runs have no `get_child`).

    LangChain calls `_stream` without a run manager; the inner model would then inherit the
    context's config, stream taps included, so it gets that config without them.
    """
    if run_manager is None:
        return without_stream_taps(ensure_config())
    kind = AsyncCallbackManager if isinstance(run_manager, AsyncCallbackManagerForLLMRun) else CallbackManager
    manager = kind(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return without_stream_taps({"callbacks": manager})


class GuardedChatModel(BaseChatModel):
    """A chat model that guards another: drop it in wherever a chat model goes.

    >>> from langchain_core.language_models import GenericFakeChatModel
    >>> from guardrail import Guard
    >>> from guardrail.testing import KeywordScorer
    >>> model = GuardedChatModel(
    ...     chat_model=GenericFakeChatModel(messages=iter(["Knead the dough."])),
    ...     guard=Guard(scorer=KeywordScorer({"bomb": 0.99})),
    ... )
    >>> model.invoke("How do I bake bread?").content
    'Knead the dough.'

    Input (the latest user turn) is checked before the inner model runs, output after; streams
    are moderated (`stream_mode`, `every`, `unit`). `bind_tools` and `with_structured_output`
    delegate to the inner model and keep the guard; tool-call arguments are checked as output.
    Sampling and connection settings (temperature, api_key, ...) belong to the inner model;
    like other chat models this one ignores constructor arguments it does not know.
    """

    chat_model: BaseChatModel
    guard: Guard
    input_key: str | None = None
    check_input: bool = True
    check_output: bool = True
    stream_mode: Literal["hold", "stream_first"] = "hold"
    every: int = 200
    unit: Literal["chars", "chunks"] = "chars"
    optimistic: bool = False
    streaming: bool = False
    """Stream from the inner model (through moderation) even on `invoke`."""
    options: GuardOptions | None = None
    """All the guard's options at once (`guardrail.GuardOptions`); overrides the fields above."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _calls: GuardedCalls = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        if self.options is None:
            self.options = GuardOptions(
                input_key=self.input_key,
                check_input=self.check_input,
                check_output=self.check_output,
                stream_mode=self.stream_mode,
                every=self.every,
                unit=self.unit,
                optimistic=self.optimistic,
            )
        self._calls = GuardedCalls(self.guard, options_for(self.guard, self.options), self.chat_model, AIMessage)

    @property
    def _llm_type(self) -> str:
        return f"guarded-{self.chat_model._llm_type}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "chat_model": self.chat_model._llm_type,
            "policies": [p.name for p in self.guard.policies],
            "stream_mode": self.stream_mode,
        }

    @property
    def model_name(self) -> str | None:
        """The inner model's name, where it has one (LangChain agents read this)."""
        for attr in ("model_name", "model", "model_id"):
            value = getattr(self.chat_model, attr, None)
            if isinstance(value, str):
                return value
        return None

    def _convert_input(self, model_input: LanguageModelInput) -> PromptValue:
        """LangChain's conversion (every entry point goes through it), its untyped errors
        raised as `guardrail.MessageError` before any model runs."""
        try:
            return super()._convert_input(model_input)
        except CONVERSION_ERRORS as exc:
            raise MessageError(f"input messages can't be read: {exc!r}") from exc

    def _resolve_model_profile(self) -> ModelProfile | None:
        return self.chat_model.profile

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = self.chat_model._get_ls_params(stop=stop, **kwargs)
        if isinstance(kwargs.get("model"), str):
            params["ls_model_name"] = kwargs["model"]
        elif not params.get("ls_model_name"):
            params["ls_model_name"] = self.model_name or self.chat_model._llm_type
        return params

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config = _child_config(run_manager)
        message = self._calls.invoke(messages, run_manager, config, stop=stop, **kwargs)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config = _child_config(run_manager)
        message = await self._calls.ainvoke(messages, run_manager, config, stop=stop, **kwargs)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        config = _child_config(run_manager)
        for chunk in self._calls.stream(messages, run_manager, config, stop=stop, **kwargs):
            yield ChatGenerationChunk(message=chunk)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        config = _child_config(run_manager)
        async for chunk in self._calls.astream(messages, run_manager, config, stop=stop, **kwargs):
            yield ChatGenerationChunk(message=chunk)

    def _guarded(self, runnable: Runnable) -> GuardedRunnable:
        return GuardedRunnable(runnable, self.guard, options=self.options)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools the way the inner model does; calls still go through this guard."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        bound = self.chat_model.bind_tools(tools, **kwargs)
        if isinstance(bound, RunnableBinding) and bound.bound is self.chat_model:
            guarded = self.bind(**bound.kwargs)
            return guarded.with_config(bound.config) if bound.config else guarded
        return self._guarded(bound)  # an unusual binding: guard it as a whole

    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """The inner model's structured output, guarded. Output is checked as JSON text.

        A `rewrite` policy can't put a refusal into a structured value, so it blocks here.
        """
        structured = self.chat_model.with_structured_output(schema, include_raw=include_raw, **kwargs)
        return self._guarded(structured)
