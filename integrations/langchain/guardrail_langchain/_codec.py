"""LangChain's codec for the guardrail kernel: one Runnable call, and the chunks of its stream.

Conversion only: what the input's conversation is, how an output reads as text, how a refusal
looks in the caller's type (str, `AIMessage`, `AIMessageChunk`). When to check and what a
verdict means is `guardrail.invoke` / `guardrail.open_stream`'s (the kernel).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from typing import Any

from guardrail import Call, ChunkReader, GuardOptions, MessageError
from langchain_core.messages import AIMessageChunk, BaseMessageChunk

from guardrail_langchain._convert import input_messages, output_text, refusal_chunk, refusal_output, text_of, tool_calls_text

__all__ = ["MessageChunks", "RunnableCall"]


class RunnableCall(Call):
    """One guarded call of a Runnable (a `guardrail.Call`); `start` runs it (`invoke`,
    `ainvoke`, `stream` or `astream`, bound to its input, config and keywords)."""

    def __init__(self, start: Callable[[], Any], value: Any, options: GuardOptions, output_kind: type | None) -> None:
        self.conversation: Sequence[Any] = input_messages(value, input_key=options.input_key)
        if options.check_input and not any(m.get("role") == "user" for m in self.conversation):
            # Before anything runs: an optimistic call would already have started.
            raise MessageError("the input has no user message (HumanMessage) to check, so nothing is sent")
        self._start = start
        self.output_kind = output_kind

    def start(self) -> Any:
        return self._start()

    def outputs(self, output: Any) -> list[str]:
        return [output_text(output)]

    def refuse(self, output: Any, indexes: set[int], refusal: str) -> Any:
        return refusal_output(None, refusal, like=output)  # None for a structured output: Blocked

    def refusal(self, refusal: str) -> Any:
        return refusal_output(self.output_kind, refusal)

    def reader(self) -> MessageChunks:
        return MessageChunks(self.output_kind)


def _is_message(chunk: Any) -> bool:
    return isinstance(chunk, BaseMessageChunk)


class MessageChunks(ChunkReader):
    """Reads a LangChain stream (a `guardrail.ChunkReader`): str and message chunks carry text;
    tool-call chunks and other values (structured output) wait for the final check, which reads
    them whole (tool calls as `name(arguments)`, values as JSON)."""

    def __init__(self, output_kind: type | None) -> None:
        self.kind = output_kind
        self.first: type | None = None
        self.id: str | None = None
        self.tools: Any = None  # the tool-call chunks, added up
        self.values: Any = None  # the other chunks, aggregated like `Runnable.transform`

    def text(self, chunk: Any) -> str:
        self.first = self.first or type(chunk)
        if isinstance(chunk, str):
            return chunk
        if _is_message(chunk):
            self.id = self.id or chunk.id
            if getattr(chunk, "tool_call_chunks", None):
                self.tools = chunk if self.tools is None else self.tools + chunk
            return text_of(chunk.content)
        self.values = _add(self.values, chunk)
        return ""

    def held(self, chunk: Any) -> bool:
        return not isinstance(chunk, str) and (not _is_message(chunk) or bool(getattr(chunk, "tool_call_chunks", None)))

    def split(self, chunk: Any, n: int) -> tuple[Any, Any] | None:
        if isinstance(chunk, str):
            return chunk[:n], chunk[n:]
        if isinstance(chunk, AIMessageChunk) and isinstance(chunk.content, str):
            head = AIMessageChunk(content=chunk.content[:n], id=chunk.id)
            return head, chunk.model_copy(update={"content": chunk.content[n:]})
        return None

    def extra_text(self) -> str:
        parts = [tool_calls_text(self.tools) if self.tools is not None else ""]
        parts.append(output_text(self.values) if self.values is not None else "")
        return "\n".join(p for p in parts if p)

    def last(self, chunks: list[Any]) -> list[Any]:
        """Tool calls go out last and once, merged with the message chunks after them."""
        start = next((n for n, c in enumerate(chunks) if _is_message(c) and getattr(c, "tool_call_chunks", None)), None)
        if start is None:
            return chunks
        tail = [c for c in chunks[start:] if _is_message(c)]
        return [*chunks[:start], functools.reduce(operator.add, tail), *(c for c in chunks[start:] if not _is_message(c))]

    def refusal(self, refusal: str, *, after_text: bool) -> list[Any] | None:
        chunk = refusal_chunk(self.first or self.kind, refusal, self.id)
        if chunk is None:  # a structured stream can't carry a refusal
            return None
        if after_text and isinstance(chunk, str):
            chunk = "\n\n" + chunk
        elif after_text:
            chunk.content = "\n\n" + chunk.content
        return [chunk]


def _add(total: Any, chunk: Any) -> Any:
    """Aggregate like `Runnable.transform`: add when the type allows, else keep the latest."""
    if total is None:
        return chunk
    try:
        return total + chunk
    except TypeError:
        return chunk
