"""Small pure helpers shared by the chat and responses codecs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import openai

from guardrail import MessageError

__all__ = ["as_sequence", "field", "given", "has_user_message", "with_answer"]


def given(value: Any) -> bool:
    """False for OpenAI's `omit` / `NOT_GIVEN` sentinels and `None`."""
    return value is not None and not isinstance(value, (openai.Omit, openai.NotGiven))


def field(item: Any, name: str) -> Any:
    if isinstance(item, Mapping):
        return item.get(name)
    return getattr(item, name, None)


def has_user_message(messages: Sequence[Any]) -> bool:
    return any(field(m, "role") == "user" for m in messages)


def as_sequence(value: Any, what: str) -> list[Any]:
    """A list of the messages; iterables are materialised once so the checked items are sent."""
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise MessageError(f"{what} must be a list of messages, got {type(value).__name__}")
    return list(value)


def with_answer(conversation: Sequence[Any], text: str) -> list[Any]:
    """The conversation followed by the assistant's answer, as the output check reads it."""
    return [*conversation, {"role": "assistant", "content": text}]
