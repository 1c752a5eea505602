"""Small pure helpers shared by the chat and responses codecs. The rules for roles, and how
OpenAI's shapes are read, live in the core (`guardrail.shapes`), shared with the service's
guarding proxy: every message must carry one of OpenAI's roles, spelled exactly; anything else
raises `MessageError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import openai

from guardrail import ConfigError, MessageError
from guardrail.shapes import CHAT_ROLES, INPUT_ROLES, field, message_role

__all__ = [
    "CHAT_ROLES",
    "INPUT_ROLES",
    "as_sequence",
    "check_extra_body",
    "field",
    "given",
    "message_role",
]


def given(value: Any) -> bool:
    """False for OpenAI's `omit` / `NOT_GIVEN` sentinels and `None`."""
    return value is not None and not isinstance(value, (openai.Omit, openai.NotGiven))


def as_sequence(value: Any, what: str) -> list[Any]:
    """A list of the messages; iterables are materialised once so the checked items are sent."""
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise MessageError(f"{what} must be a list of messages, got {type(value).__name__}")
    return list(value)


def check_extra_body(kwargs: Mapping[str, Any], read: Iterable[str]) -> None:
    """`ConfigError` if `extra_body` would replace a parameter the guard read.

    OpenAI merges `extra_body` over the request body, so `extra_body={"messages": ...}` would
    send messages other than the ones checked.
    """
    extra = kwargs.get("extra_body")
    if not given(extra):
        return
    if not isinstance(extra, Mapping):
        raise ConfigError(f"extra_body must be a mapping, got {type(extra).__name__}")
    clashes = sorted(set(read) & set(extra))
    if clashes:
        raise ConfigError(
            f"extra_body may not set {', '.join(clashes)}: the guard checks the keyword "
            "arguments, so pass them as keyword arguments"
        )
