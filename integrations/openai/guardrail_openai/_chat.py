"""Chat Completions: what to check in a request, a completion and a chunk, and how to refuse.

Everything here is pure: no HTTP, no scoring. The checked output text of a choice is its
content, its refusal and its tool-call arguments, so tool arguments are moderated like text.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta

from guardrail import ConfigError
from guardrail_openai._common import as_sequence, field, given, has_user_message

__all__ = ["ChatChunks", "ChatCodec"]


def _tool_arguments(message: Any) -> list[str]:
    texts = []
    for call in field(message, "tool_calls") or ():
        function = field(call, "function")
        arguments = field(function, "arguments") if function is not None else field(call, "input")
        if isinstance(arguments, str):
            texts.append(arguments)
    legacy = field(message, "function_call")
    if legacy is not None and isinstance(field(legacy, "arguments"), str):
        texts.append(field(legacy, "arguments"))
    return texts


def _message_text(message: Any, sep: str) -> str:
    parts = [field(message, "content"), field(message, "refusal"), *_tool_arguments(message)]
    return sep.join(p for p in parts if isinstance(p, str) and p)


class ChatCodec:
    """Reads and refuses `chat.completions` requests and results."""

    name = "chat.completions"

    def conversation(self, kwargs: dict[str, Any]) -> list[Any]:
        """The messages to check; pins them into `kwargs` so the checked list is what is sent."""
        messages = kwargs.get("messages")
        if not given(messages):
            raise ConfigError("chat.completions.create needs messages")
        kwargs["messages"] = as_sequence(messages, "messages")
        return kwargs["messages"]

    def should_check_input(self, conversation: list[Any]) -> bool:
        return has_user_message(conversation)

    def validate_stream(self, kwargs: Mapping[str, Any]) -> None:
        n = kwargs.get("n")
        if given(n) and n != 1:
            raise ConfigError("guarded streaming supports n=1 only; stream one choice per call")

    def outputs(self, completion: ChatCompletion) -> list[str]:
        return [_message_text(choice.message, "\n") for choice in completion.choices]

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
                message = choice.message.model_copy(update=update)
                choice = choice.model_copy(
                    update={"message": message, "finish_reason": "content_filter", "logprobs": None}
                )
            choices.append(choice)
        return completion.model_copy(update={"choices": choices})

    def refusal_result(self, kwargs: Mapping[str, Any], refusal: str) -> ChatCompletion:
        """The completion returned when the input is refused and OpenAI is never called."""
        model = kwargs.get("model")
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

    def chunks(self, kwargs: Mapping[str, Any]) -> ChatChunks:
        model = kwargs.get("model")
        return ChatChunks(model if isinstance(model, str) else "")


class ChatChunks:
    """Per-stream reader of `ChatCompletionChunk`s; remembers the last chunk to refuse like it."""

    def __init__(self, model: str) -> None:
        self.last: ChatCompletionChunk | None = None
        self.model = model

    def text(self, chunk: ChatCompletionChunk) -> str:
        self.last = chunk
        choices = chunk.choices
        if len(choices) == 1 and isinstance(choices[0], ChunkChoice):  # the common case, read directly
            delta = choices[0].delta
            if delta.tool_calls is None and delta.function_call is None and delta.refusal is None:
                return delta.content or ""
        return "".join(_message_text(choice.delta, "") for choice in choices)

    def is_tool_call(self, chunk: ChatCompletionChunk) -> bool:
        return any(c.delta.tool_calls or c.delta.function_call for c in chunk.choices)

    def refusal(self, refusal: str) -> list[ChatCompletionChunk]:
        last = self.last
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
