"""Messages in, the turn to score out.

Accepted messages are OpenAI-shaped dicts (`{"role": ..., "content": ...}`) or objects with
`role` and `content` attributes. Content is a string or a list of content parts; text parts
(`text`, `input_text`, `output_text`) are joined and scored. Any other part is refused with a
`MessageError` rather than passed unchecked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from guardrail._exceptions import MessageError
from guardrail._policies import Stage

__all__ = ["Message", "Turn", "message_text", "prompt_text", "select_turn", "tool_call_text"]

_TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})
_ASSISTANT_ROLES = frozenset({"assistant", "model"})


@dataclass(frozen=True, kw_only=True)
class Message:
    """A chat message reduced to what scoring needs."""

    role: str
    content: str


@dataclass(frozen=True, kw_only=True)
class Turn:
    """What a check scores: the user's prompt and, for the output stage, the model's response."""

    prompt: str
    response: str | None = None

    @property
    def stage(self) -> Stage:
        return Stage.INPUT if self.response is None else Stage.OUTPUT


def _field(message: Any, name: str) -> Any:
    if isinstance(message, Mapping):
        return message.get(name)
    return getattr(message, name, None)


def message_role(message: Any, index: int) -> str:
    role = _field(message, "role")
    if not isinstance(role, str) or not role:
        raise MessageError(f"message {index}: 'role' must be a non-empty string, got {role!r}")
    return role


def _content_text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, (bytes, bytearray)):
        texts = []
        for n, part in enumerate(content):
            kind = _field(part, "type")
            text = _field(part, "text")
            if not isinstance(kind, str) or kind not in _TEXT_PART_TYPES or not isinstance(text, str):
                raise MessageError(
                    f"message {index}, content part {n}: only text parts can be checked, "
                    f"got type {kind!r}"
                )
            texts.append(text)
        return "\n".join(texts)
    raise MessageError(
        f"message {index}: 'content' must be a string or a list of text parts, "
        f"got {type(content).__name__}"
    )


def tool_call_text(name: str, arguments: Any) -> str:
    """A tool call as the guard scores it, whichever API it came through: `name(arguments)`.

    Arguments that are JSON (a string of it, as OpenAI sends them, or the parsed value, as
    LangChain holds them) are written as canonical JSON (`json.dumps`, non-ASCII kept), so one
    call gets one text, and escapes such as `\\u0062omb` are scored as the text they spell.
    Arguments that are not JSON are scored as sent.

    >>> tool_call_text("search", '{"q":"bread"}') == tool_call_text("search", {"q": "bread"})
    True
    """
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return f"{name}({arguments})"
    return f"{name}({json.dumps(arguments, ensure_ascii=False, default=str)})"


def _call_texts(message: Any, index: int) -> list[str]:
    """A refusal and tool calls reach the caller like content does, so they are scored too."""
    texts = []
    refusal = _field(message, "refusal")
    if refusal is not None:
        if not isinstance(refusal, str):
            raise MessageError(f"message {index}: 'refusal' must be a string, got {type(refusal).__name__}")
        texts.append(refusal)
    calls = _field(message, "tool_calls") or []
    legacy = _field(message, "function_call")
    if isinstance(calls, (str, bytes)) or not isinstance(calls, Sequence):
        raise MessageError(f"message {index}: 'tool_calls' must be a list")
    for n, call in enumerate([*calls, *([{"function": legacy}] if legacy else [])]):
        custom = _field(call, "custom")
        spec = custom if custom is not None else _field(call, "function")
        name = _field(spec, "name")
        args = _field(spec, "input" if custom is not None else "arguments")
        if not isinstance(name, str) or not isinstance(args, str):
            raise MessageError(f"message {index}, tool call {n}: needs a name and string arguments")
        texts.append(tool_call_text(name, args))
    return texts


def message_text(message: Any, index: int = 0) -> str:
    """The text of one message: its content (a string, or text parts joined by newlines), then
    any refusal and tool calls (`name(arguments)`), which reach the caller like content does."""
    content = _field(message, "content")
    extra = _call_texts(message, index)
    if content is None and extra:
        return "\n".join(extra)
    return "\n".join([_content_text(content, index), *extra])


def _as_list(messages: Any) -> list[Any]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, Mapping) or not isinstance(messages, Sequence):
        raise MessageError(
            f"messages must be a string or a sequence of messages, got {type(messages).__name__}"
        )
    if not messages:
        raise MessageError("messages is empty")
    return list(messages)


def _last_index(messages: list[Any], roles: frozenset[str], before: int) -> int | None:
    for index in range(before - 1, -1, -1):
        if message_role(messages[index], index) in roles:
            return index
    return None


def prompt_text(messages: Any) -> str:
    """The prompt an answer to `messages` is judged with: the latest user message's text, or
    "" when there is none (as `select_turn` pairs an output check)."""
    items = _as_list(messages)
    user = _last_index(items, frozenset({"user"}), len(items))
    return "" if user is None else message_text(items[user], user)


def select_turn(messages: Any, stage: Stage) -> tuple[Turn, int]:
    """The turn a check scores, and the index of the message it judges.

    The input stage scores the latest user message. The output stage scores the latest
    assistant message together with the latest user message before it (an empty Human Question
    when there is none, as the ShieldGemma paper does for model-output-only data).

    >>> select_turn([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    ...             Stage.OUTPUT)
    (Turn(prompt='hi', response='hello'), 1)
    """
    items = _as_list(messages)
    if stage is Stage.INPUT:
        user = _last_index(items, frozenset({"user"}), len(items))
        if user is None:
            raise MessageError("the input stage needs a message with role 'user'")
        return Turn(prompt=message_text(items[user], user)), user
    answer = _last_index(items, _ASSISTANT_ROLES, len(items))
    if answer is None:
        raise MessageError("the output stage needs a message with role 'assistant'")
    user = _last_index(items, frozenset({"user"}), answer)
    prompt = "" if user is None else message_text(items[user], user)
    return Turn(prompt=prompt, response=message_text(items[answer], answer)), answer
