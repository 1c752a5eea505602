"""OpenAI's shapes, read the same way by every codec (public, for adapters): `guardrail_openai` (openai's types) and
the service's guarding proxy (plain JSON dicts). Pure; no `openai` import. `field` reads a
mapping key or an attribute, so each helper takes either.

Roles are checked before anything is sent, because the guard scores the messages whose role is
exactly `user`: a message the server might read as the user's words under another spelling
(`"User"`, `"human"`, no role, a bare string) would otherwise go out unchecked.

The checked text of a chat message (or delta) is its reasoning (`reasoning_content` /
`reasoning`, the extra fields vLLM- and DeepSeek-style servers send), content, refusal and
tool-call arguments; of a Responses output item, its text, refusal, reasoning and tool input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from guardrail._exceptions import MessageError
from guardrail._messages import tool_call_text

__all__ = [
    "CHAT_ROLES",
    "INPUT_ROLES",
    "REASONING_FIELDS",
    "TEXT_DELTAS",
    "field",
    "item_texts",
    "message_role",
    "message_text",
    "reasoning_texts",
    "tool_call_texts",
]

# Chat Completions' roles, and those of a Responses API input message.
CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
INPUT_ROLES = frozenset({"system", "developer", "user", "assistant"})
# Extra fields in which OpenAI-compatible servers send the model's reasoning as text.
REASONING_FIELDS = ("reasoning_content", "reasoning")
# Responses stream deltas of text the caller would see; each is moderated (and held in `hold`
# mode). Tool-call argument deltas are not among them: a call is checked whole at the end.
TEXT_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
    }
)


def field(item: Any, name: str) -> Any:
    """`item[name]` of a mapping, else the attribute; None when absent."""
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


def tool_call_texts(message: Any) -> list[str]:
    """A message's tool calls as `guardrail.tool_call_text` writes them (`name(arguments)`)."""
    texts = []
    for call in field(message, "tool_calls") or ():
        custom = field(call, "custom")
        spec = custom if custom is not None else field(call, "function")
        arguments = field(spec, "input" if custom is not None else "arguments")
        if isinstance(arguments, str):
            texts.append(tool_call_text(field(spec, "name") or "", arguments))
    legacy = field(message, "function_call")
    if legacy is not None and isinstance(field(legacy, "arguments"), str):
        texts.append(tool_call_text(field(legacy, "name") or "", field(legacy, "arguments")))
    return texts


def reasoning_texts(message: Any) -> list[str]:
    """The reasoning text of a message or delta; a structured value is checked as JSON."""
    values = (field(message, name) for name in REASONING_FIELDS)
    return [v if isinstance(v, str) else json.dumps(v, default=str) for v in values if v is not None]


def message_text(message: Any, sep: str, *, calls: bool = True) -> str:
    """The checked text of a chat message or delta (`calls`: with its tool calls)."""
    parts = [*reasoning_texts(message), field(message, "content"), field(message, "refusal")]
    parts += tool_call_texts(message) if calls else []
    return sep.join(p for p in parts if isinstance(p, str) and p)


def item_texts(item: Any) -> list[str]:
    """The checked texts of a Responses output item."""
    kind = field(item, "type")
    if kind == "reasoning":
        parts = [*(field(item, "summary") or ()), *(field(item, "content") or ())]
        return [t for t in (field(p, "text") for p in parts) if isinstance(t, str)]
    if kind == "message":
        texts = []
        for part in field(item, "content") or ():
            text = field(part, "text") if field(part, "type") == "output_text" else field(part, "refusal")
            if isinstance(text, str):
                texts.append(text)
        return texts
    value = field(item, "arguments") if kind == "function_call" else field(item, "input")
    if kind in ("function_call", "custom_tool_call") and isinstance(value, str):
        return [tool_call_text(field(item, "name") or "", value)]
    return []
