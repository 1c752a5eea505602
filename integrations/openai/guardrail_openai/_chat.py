"""Chat Completions: what to check in a request, a completion and a chunk, and how to refuse.

Everything here is pure: no HTTP, no scoring. The checked output text of a choice is its
reasoning (`reasoning_content` / `reasoning`, the extra fields vLLM- and DeepSeek-style servers
send; unless the wrapper strips them), its content, its refusal and its tool-call arguments, so
tool arguments and reasoning are moderated like text.

A request is refused before it is sent (`MessageError`) when a message's role is not exactly
one of OpenAI's (`system`, `developer`, `user`, `assistant`, `tool`, `function`) or when no
message has role `user`: there would be nothing to check. Audio output can't be checked and
raises `ConfigError`, as does an `extra_body` that would replace what the guard read.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from pydantic import BaseModel

from guardrail import Call, ChunkReader, ConfigError, GuardOptions, MessageError, tool_call_text
from guardrail.shapes import REASONING_FIELDS, message_text, reasoning_texts
from guardrail_openai._common import CHAT_ROLES, as_sequence, check_extra_body, given, message_role

__all__ = ["REASONING_FIELDS", "ChatCall", "ChatChunks"]

# Request parameters the guard reads, which `extra_body` must not replace.
_READ = ("messages", "n", "stream", "modalities", "audio")


def _without_reasoning(model: BaseModel) -> BaseModel:
    """A copy of a message or delta without its reasoning fields (itself when it has none)."""
    extra = model.__pydantic_extra__ or {}
    if not set(REASONING_FIELDS) & set(extra) and not reasoning_texts(model):
        return model
    declared = {name: None for name in REASONING_FIELDS if name in type(model).model_fields}
    copy = model.model_copy(update=declared)
    copy.__pydantic_extra__ = {k: v for k, v in extra.items() if k not in REASONING_FIELDS}
    return copy


class ChatCall(Call):
    """One `chat.completions` request: read, sent and refused (a `guardrail.Call`)."""

    name = "chat.completions"

    def __init__(self, method: Callable[..., Any], kwargs: Mapping[str, Any], options: GuardOptions) -> None:
        self.kwargs = dict(kwargs)
        self.reasoning = options.reasoning
        self.validate(self.kwargs)
        self.conversation: Sequence[Any] = self._conversation(self.kwargs)
        self.streaming = self.kwargs.get("stream") is True
        self._method = method

    def start(self) -> Any:
        return self._method(**self.kwargs)

    @staticmethod
    def _conversation(kwargs: dict[str, Any]) -> list[Any]:
        """The messages to check; pins them into `kwargs` so the checked list is what is sent.

        Raises `MessageError` for a role that is not exactly one of OpenAI's, and when no
        message has role `user`: nothing would be checked, so nothing is sent.
        """
        messages = kwargs.get("messages")
        if not given(messages):
            raise ConfigError("chat.completions.create needs messages")
        kwargs["messages"] = as_sequence(messages, "messages")
        roles = [message_role(m, n, CHAT_ROLES, "messages") for n, m in enumerate(kwargs["messages"])]
        if "user" not in roles:
            raise MessageError(
                "messages has no message with role 'user', so the guard has nothing to check; "
                "it sends nothing it has not checked"
            )
        return kwargs["messages"]

    def validate(self, kwargs: Mapping[str, Any]) -> None:
        """`ConfigError` for requests whose output the guard could not check."""
        check_extra_body(kwargs, _READ)
        n = kwargs.get("n")
        if kwargs.get("stream") is True and given(n) and n != 1:
            raise ConfigError("guarded streaming supports n=1 only; stream one choice per call")
        if given(kwargs.get("audio")) or "audio" in (kwargs.get("modalities") or ()):  # omit is falsy
            raise ConfigError("audio output can't be checked; ask for text, or use client.unguarded")

    def visible(self, completion: ChatCompletion) -> ChatCompletion:
        """The completion as the caller may see it: without reasoning when it is stripped."""
        if self.reasoning != "strip":
            return completion
        choices = [c.model_copy(update={"message": _without_reasoning(c.message)}) for c in completion.choices]
        return completion.model_copy(update={"choices": choices})

    def outputs(self, completion: ChatCompletion) -> list[str]:
        return [message_text(choice.message, "\n") for choice in completion.choices]

    def refuse(self, completion: ChatCompletion, indexes: set[int], refusal: str) -> ChatCompletion:
        """A copy of `completion` whose choices at `indexes` say `refusal` (content_filter)."""
        choices = []
        for n, choice in enumerate(completion.choices):
            if n in indexes:
                update: dict[str, Any] = {"content": refusal, "refusal": None, "tool_calls": None}
                if "function_call" in type(choice.message).model_fields:
                    update["function_call"] = None
                if "parsed" in type(choice.message).model_fields:
                    update["parsed"] = None
                message = _without_reasoning(choice.message.model_copy(update=update))
                choice = choice.model_copy(
                    update={"message": message, "finish_reason": "content_filter", "logprobs": None}
                )
            choices.append(choice)
        return completion.model_copy(update={"choices": choices})

    def refusal(self, refusal: str) -> ChatCompletion:
        """The completion returned when the input is refused and OpenAI is never called."""
        model = self.kwargs.get("model")
        return ChatCompletion(
            id=f"chatcmpl-guardrail-{uuid.uuid4().hex}",
            object="chat.completion",
            created=int(time.time()),
            model=model if isinstance(model, str) else "",
            choices=[
                Choice(
                    index=0,
                    finish_reason="content_filter",
                    message=ChatCompletionMessage(role="assistant", content=refusal),
                )
            ],
        )

    def reader(self) -> ChatChunks:
        model = self.kwargs.get("model")
        return ChatChunks(model if isinstance(model, str) else "", strip=self.reasoning == "strip")


class ChatChunks(ChunkReader):
    """Per-stream reader of `ChatCompletionChunk`s (a `guardrail.ChunkReader`); remembers the
    latest chunk to refuse like it, and each tool call's name and arguments to check at the end."""

    def __init__(self, model: str, *, strip: bool = False) -> None:
        self.latest: ChatCompletionChunk | None = None
        self.model = model
        self.strip = strip
        self.calls: dict[tuple[int, int], list[str]] = {}  # (choice, call index) -> [name, arguments]

    def visible(self, chunk: ChatCompletionChunk) -> ChatCompletionChunk:
        """The chunk as the caller may see it: without reasoning when it is stripped."""
        if not self.strip or not any(c.delta.model_extra for c in chunk.choices):
            return chunk
        choices = [c.model_copy(update={"delta": _without_reasoning(c.delta)}) for c in chunk.choices]
        return chunk.model_copy(update={"choices": choices})

    def text(self, chunk: ChatCompletionChunk) -> str:
        self.latest = chunk
        choices = chunk.choices
        if len(choices) == 1 and isinstance(choices[0], ChunkChoice):  # the common case, read directly
            delta = choices[0].delta
            plain = delta.tool_calls is None and delta.function_call is None and delta.refusal is None
            if plain and not delta.model_extra:
                return delta.content or ""
        for choice in choices:
            self._collect_calls(choice.index, choice.delta)
        return "".join(message_text(choice.delta, "", calls=False) for choice in choices)

    def _collect_calls(self, choice: int, delta: Any) -> None:
        legacy = [(-1, delta.function_call)] if delta.function_call is not None else []
        for key, spec in [*((c.index, c.function) for c in delta.tool_calls or ()), *legacy]:
            call = self.calls.setdefault((choice, key), ["", ""])
            call[0] += (spec.name or "") if spec is not None else ""
            call[1] += (spec.arguments or "") if spec is not None else ""

    def held(self, chunk: ChatCompletionChunk) -> bool:
        return any(c.delta.tool_calls or c.delta.function_call for c in chunk.choices)

    def extra_text(self) -> str:
        return "\n".join(tool_call_text(name, arguments) for name, arguments in self.calls.values())

    def refusal(self, refusal: str, *, after_text: bool = False) -> list[ChatCompletionChunk]:
        last = self.latest
        return [
            ChatCompletionChunk(
                id=last.id if last else f"chatcmpl-guardrail-{uuid.uuid4().hex}",
                object="chat.completion.chunk",
                created=last.created if last else int(time.time()),
                model=last.model if last else self.model,
                choices=[
                    ChunkChoice(
                        index=0,
                        delta=ChoiceDelta(role="assistant", content=refusal),
                        finish_reason="content_filter",
                    )
                ],
            )
        ]
