"""Small pure helpers shared by the chat and responses codecs, and the rules for roles.

Roles are checked before anything is sent, because the guard scores the messages whose role is
exactly `user`: a message the server might read as the user's words under another spelling
(`"User"`, `"human"`, no role, a bare string) would otherwise go out unchecked. Every message
must carry one of OpenAI's roles, spelled exactly; anything else raises `MessageError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import openai

from guardrail import ConfigError, MessageError

__all__ = [
    "CHAT_ROLES",
    "INPUT_ROLES",
    "as_sequence",
    "check_extra_body",
    "field",
    "given",
    "message_role",
]

# Chat Completions' roles, and those of a Responses API input message.
CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
INPUT_ROLES = frozenset({"system", "developer", "user", "assistant"})


def given(value: Any) -> bool:
    """False for OpenAI's `omit` / `NOT_GIVEN` sentinels and `None`."""
    return value is not None and not isinstance(value, (openai.Omit, openai.NotGiven))


def field(item: Any, name: str) -> Any:
    if isinstance(item, Mapping):
        return item.get(name)
    return getattr(item, name, None)


def message_role(item: Any, index: int, roles: frozenset[str], what: str) -> str:
    """The role of `what[index]`; `MessageError` unless it is one of `roles`, spelled exactly."""
    if isinstance(item, (str, bytes)):
        raise MessageError(
            f"{what}[{index}] is a bare {type(item).__name__}; every message needs a role, "
            "e.g. {'role': 'user', 'content': ...}"
        )
    role = field(item, "role")
    if not isinstance(role, str) or role not in roles:
        raise MessageError(
            f"{what}[{index}] has role {role!r}; the guard accepts only {', '.join(sorted(roles))}, "
            "spelled exactly, so that it knows which text is the user's"
        )
    return role


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
