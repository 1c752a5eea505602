"""Fakes for testing guarded chains offline: a scripted chat model and a slow scorer.

>>> from guardrail_langchain.testing import ScriptedChatModel
>>> model = ScriptedChatModel(responses=["Hello there."])
>>> [c.content for c in model.stream("hi")]
['Hello', ' ', 'there.', '']
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from guardrail import ScoreRequest, Scorer
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr

__all__ = ["ScriptedChatModel", "SlowScorer"]


class SlowScorer:
    """Wraps a scorer and takes `delay` seconds per batch (sync sleeps, async awaits)."""

    def __init__(self, inner: Scorer, *, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        time.sleep(self.delay)
        return self.inner.score(requests)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[float]:
        await asyncio.sleep(self.delay)
        return self.inner.score(requests)


def _as_message(response: AIMessage | str) -> AIMessage:
    return AIMessage(content=response) if isinstance(response, str) else response


class ScriptedChatModel(BaseChatModel):
    """A chat model that answers with `responses` (str or `AIMessage`) in turn, streaming word by word.

    `delay` seconds pass before an answer starts (async: awaited, so cancellable), then
    `chunk_delay` before each streamed chunk. Tool calls of a scripted `AIMessage` stream as
    one tool-call chunk. `calls` counts generations started, `pulled` chunks handed out and
    `seen` the messages of each call; `bind_tools` binds OpenAI-format tools.
    """

    responses: list[Any] = Field(default_factory=lambda: ["ok"])
    delay: float = 0.0
    chunk_delay: float = 0.0
    _index: int = PrivateAttr(default=0)
    calls: int = 0
    pulled: int = 0
    finished: int = 0
    seen: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted-chat-model"

    def _next(self, messages: list[BaseMessage]) -> AIMessage:
        self.calls += 1
        self.seen.append(list(messages))
        response = _as_message(self.responses[self._index % len(self.responses)])
        self._index += 1
        return response

    def _chunks(self, message: AIMessage) -> list[AIMessageChunk]:
        text = message.content if isinstance(message.content, str) else message.text
        chunks = [AIMessageChunk(content=t) for t in re.split(r"(\s)", text) if t]
        for n, call in enumerate(message.tool_calls):
            chunks.append(
                AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        {"name": call["name"], "args": json.dumps(call["args"]), "id": call.get("id") or f"call_{n}", "index": n}
                    ],
                )
            )
        chunks.append(AIMessageChunk(content="", chunk_position="last", usage_metadata=message.usage_metadata))
        return chunks

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        time.sleep(self.delay)
        message = self._next(messages)
        self.finished += 1
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        await asyncio.sleep(self.delay)
        message = self._next(messages)
        self.finished += 1
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        time.sleep(self.delay)
        for chunk in self._chunks(self._next(messages)):
            time.sleep(self.chunk_delay)
            self.pulled += 1
            yield ChatGenerationChunk(message=chunk)
        self.finished += 1

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        await asyncio.sleep(self.delay)
        for chunk in self._chunks(self._next(messages)):
            await asyncio.sleep(self.chunk_delay)
            self.pulled += 1
            yield ChatGenerationChunk(message=chunk)
        self.finished += 1

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

