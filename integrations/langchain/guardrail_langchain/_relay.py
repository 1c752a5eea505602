"""Streamed output through `guardrail.StreamModerator`, chunk type preserved. Sans-IO.

`StreamRelay` turns upstream chunks into text deltas for the moderator and the text the
moderator releases back into chunks of the upstream's kind (str or `AIMessageChunk`). What a
delta can't carry is held until the end and checked there once: tool-call chunks, usage and
response metadata, and chunks with no text delta at all (structured output). The sync and async
stream loops in `_flow` only feed it and call the guard.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from guardrail import Blocked, Guard, StreamModerator, StreamStep, Verdict
from langchain_core.messages import AIMessageChunk, BaseMessageChunk

from guardrail_langchain._convert import output_text, refusal_chunk, text_of, tool_calls_text
from guardrail_langchain._options import GuardOptions

__all__ = ["StreamRelay"]


def _add(total: Any, chunk: Any) -> Any:
    """Aggregate like `Runnable.transform`: add when the type allows, else keep the latest."""
    if total is None:
        return chunk
    try:
        return total + chunk
    except TypeError:
        return chunk


class StreamRelay:
    """One moderated stream: `accept` each chunk, `release` each moderator step, then `end`.

    >>> relay = StreamRelay(guard, messages, GuardOptions())      # doctest: +SKIP
    >>> for chunk in upstream:                                     # doctest: +SKIP
    ...     delta = relay.accept(chunk)
    ...     if delta is not None:
    ...         yield from relay.release(relay.moderator.feed(delta))
    ...         if relay.stopped: break
    """

    def __init__(self, guard: Guard, messages: Sequence[Any], options: GuardOptions) -> None:
        self.moderator = StreamModerator(
            guard, messages, mode=options.stream_mode, every=options.every, unit=options.unit
        )
        self.messages = list(messages)
        self.refusal = guard.refusal
        self.kind: type | None = None
        self.fed = False
        self.ended = False
        self._id: str | None = None
        self._held: AIMessageChunk | None = None
        self._opaque: list[Any] = []
        self._opaque_total: Any = None

    @property
    def stopped(self) -> bool:
        return self.moderator.stopped or self.ended

    def accept(self, chunk: Any) -> str | None:
        """The text delta of `chunk` to feed the moderator, or `None` when it is held whole."""
        if self.kind is None:
            self.kind = type(chunk)
        if isinstance(chunk, str):
            self.fed = True
            return chunk
        if isinstance(chunk, BaseMessageChunk):
            self.fed = True
            self._id = self._id or chunk.id
            rest = chunk.model_copy(update={"content": ""})
            self._held = rest if self._held is None else self._held + rest  # type: ignore[assignment]
            return text_of(chunk.content)
        self._opaque.append(chunk)
        self._opaque_total = _add(self._opaque_total, chunk)
        return None

    def _chunk(self, text: str) -> Any:
        if self.kind is not None and issubclass(self.kind, str):
            return text
        return AIMessageChunk(content=text, id=self._id)

    def _stop(self, verdict: Verdict | None) -> list[Any]:
        self.ended = True
        if verdict is None or not verdict.rewritten:  # the moderator stops only with a verdict
            raise Blocked(verdict)  # type: ignore[arg-type]
        chunk = refusal_chunk(self.kind, self.refusal, self._id)
        if chunk is None:  # a structured stream can't carry a refusal
            raise Blocked(verdict)
        if self.moderator.released and isinstance(chunk, str):
            chunk = "\n\n" + chunk
        elif self.moderator.released:
            chunk.content = "\n\n" + chunk.content
        return [chunk]

    def release(self, step: StreamStep) -> list[Any]:
        """Chunks for the text `step` releases; on a stop, the refusal (rewrite) or `Blocked`."""
        out = [self._chunk(step.text)] if step.text else []
        if step.stopped:
            out.extend(self._stop(step.verdict))
        return out

    def final_messages(self) -> list[Any] | None:
        """The conversation for one more check of what deltas didn't carry, or `None`."""
        tools = tool_calls_text(self._held) if self._held is not None else ""
        if not tools and not self._opaque:
            return None
        parts = [self.moderator.text, tools]
        if self._opaque:
            parts.append(output_text(self._opaque_total))
        text = "\n".join(p for p in parts if p)
        return [*self.messages, {"role": "assistant", "content": text}]

    def end(self, verdict: Verdict | None) -> list[Any]:
        """What remains after the last check: held metadata and tool calls, held chunks."""
        if verdict is not None and not verdict.allowed:
            return self._stop(verdict)
        self.ended = True
        out: list[Any] = []
        if self._held is not None and (
            self._held.tool_call_chunks
            or self._held.usage_metadata
            or self._held.response_metadata
            or self._held.additional_kwargs
            or self._held.chunk_position
        ):
            out.append(self._held)
        out.extend(self._opaque)
        return out
