"""LangChain values to and from what the guard checks. Pure functions, no model, no I/O.

Inputs (str, message-likes, `PromptValue`, dicts) become the core's OpenAI-shaped messages;
outputs (messages, str, structured values) become the assistant text to check; refusals are
built in the shape the caller expects (`AIMessage`, `AIMessageChunk` or str).

Input rules: whatever LangChain turns into a `HumanMessage` (a str, `("human", ...)`,
`{"role": "user" | "human", ...}`) is a `user` message, and the latest one is what the input
check scores. Anything LangChain can't convert raises `guardrail.MessageError` (never
LangChain's own `ValueError`, `KeyError` or `NotImplementedError`), and so does a message
whose role, once converted, is not exactly one of OpenAI's: a `ChatMessage(role="human")` or
`role="User"` is sent as it is by some providers, so it could carry the user's words unscored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from guardrail import MessageError, tool_call_text
from langchain_core.callbacks import BaseCallbackManager
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    BaseMessageChunk,
    convert_to_messages,
    convert_to_openai_messages,
)
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import RunnableConfig
from langchain_core.tracers._streaming import _StreamingCallbackHandler, _V2StreamingCallbackHandler
from pydantic import BaseModel

__all__ = [
    "CONVERSION_ERRORS",
    "input_messages",
    "output_text",
    "refusal_chunk",
    "refusal_output",
    "text_of",
    "tool_calls_text",
    "without_stream_taps",
]

# LangChain's conversion errors: all of them mean "not a message the guard can read".
CONVERSION_ERRORS = (ValueError, TypeError, KeyError, NotImplementedError)
# The roles the core reads; LangChain's typed messages convert to these.
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_TEXT_BLOCKS = {"text": "text", "reasoning": "reasoning", "thinking": "thinking"}
# Blocks whose content reaches the caller as `tool_calls`, which are checked separately.
_TOOL_BLOCKS = frozenset(
    {"tool_use", "tool_call", "tool_call_chunk", "server_tool_call", "function_call", "server_tool_use"}
)


def _messages(value: Any) -> list[BaseMessage]:
    if isinstance(value, str):
        return convert_to_messages([("human", value)])
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, BaseMessage):
        return [value]
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        try:
            return convert_to_messages(value)
        except CONVERSION_ERRORS as exc:
            raise MessageError(f"input messages can't be read: {exc!r}") from exc
    raise MessageError(
        "input must be a str, a list of messages, a PromptValue or a dict, "
        f"got {type(value).__name__}"
    )


def _dict_messages(value: Mapping[str, Any], input_key: str | None) -> list[BaseMessage]:
    if input_key is not None:
        if input_key not in value:
            raise MessageError(f"input dict has no key {input_key!r} (keys: {sorted(value)})")
        return _messages(value[input_key])
    if "messages" in value:
        return _messages(value["messages"])
    texts = []
    for key, item in value.items():
        if isinstance(item, str):
            texts.append(item)
        elif not (item is None or isinstance(item, (bool, int, float))):
            raise MessageError(
                f"input dict value {key!r} is a {type(item).__name__}; pass input_key= to say "
                "which key holds the user's input"
            )
    if not texts:
        raise MessageError(f"input dict has no text to check (keys: {sorted(value)})")
    return _messages("\n".join(texts))


def input_messages(value: Any, *, input_key: str | None = None) -> list[dict[str, Any]]:
    """The conversation an input carries, as the core's OpenAI-shaped dicts.

    >>> input_messages([("system", "Be brief."), ("human", "hi")])
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'hi'}]
    """
    if isinstance(value, Mapping):
        messages = _dict_messages(value, input_key)
    else:
        messages = _messages(value)
    try:
        converted = convert_to_openai_messages(messages)
    except (*CONVERSION_ERRORS, AttributeError) as exc:
        raise MessageError(f"input can't be converted to messages to check: {exc!r}") from exc
    for n, message in enumerate(converted):
        if message.get("role") not in _ROLES:
            raise MessageError(
                f"input message {n} has role {message.get('role')!r}; the guard reads only "
                f"{', '.join(sorted(_ROLES))}: use a HumanMessage for the user's words"
            )
    return converted


def text_of(content: Any, *, parsed_call_ids: frozenset[str] = frozenset()) -> str:
    """The text of message content: text and reasoning blocks, and tool blocks that are not
    among the message's parsed tool calls (those are checked with `tool_calls_text`).

    A block that is none of these (an image, audio, a file) raises `MessageError`: it can't be
    checked, so it must not pass.
    """
    if isinstance(content, str):
        return content
    texts = []
    for block in content:
        if isinstance(block, str):
            texts.append(block)
            continue
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind in _TEXT_BLOCKS:
            text = block.get(_TEXT_BLOCKS[kind])
            texts.append(text if isinstance(text, str) else "")
        elif kind in _TOOL_BLOCKS:
            if block.get("id") not in parsed_call_ids:
                args = block.get("input", block.get("args", block.get("arguments", "")))
                texts.append(tool_call_text(block.get("name") or "", args))
        else:
            raise MessageError(f"output content block of type {kind!r} can't be checked")
    return "".join(texts)


def tool_calls_text(message: BaseMessage) -> str:
    """Tool calls as `guardrail.tool_call_text` writes them for every adapter, one a line;
    chunks use their raw argument strings. A legacy `function_call` is included too.
    """
    calls = getattr(message, "tool_calls", None) or []
    lines = [tool_call_text(c["name"], c["args"]) for c in calls]
    # Calls whose arguments failed to parse still reach the caller as raw text.
    lines += [tool_call_text(c.get("name") or "", c.get("args") or "") for c in getattr(message, "invalid_tool_calls", None) or []]
    if not lines and isinstance(message, AIMessageChunk):
        lines = [tool_call_text(c.get("name") or "", c.get("args") or "") for c in message.tool_call_chunks]
    legacy = message.additional_kwargs.get("function_call")
    if isinstance(legacy, Mapping):
        lines.append(tool_call_text(str(legacy.get("name") or ""), legacy.get("arguments") or ""))
    elif legacy:
        lines.append(json.dumps(legacy, ensure_ascii=False, default=str))
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseMessage):
        return output_text(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)


def output_text(output: Any) -> str:
    """The text of an output to check: message text plus its tool calls, a str, or JSON."""
    if isinstance(output, str):
        return output
    if isinstance(output, BaseMessage):
        ids = frozenset(c.get("id") for c in getattr(output, "tool_calls", None) or [])
        return "\n".join(t for t in (text_of(output.content, parsed_call_ids=ids), tool_calls_text(output)) if t)
    if isinstance(output, BaseModel):
        return output.model_dump_json()
    return json.dumps(output, ensure_ascii=False, default=_jsonable)


def refusal_output(kind: type | None, refusal: str, *, like: Any = None) -> Any:
    """A refusal in the shape of `like` (or of `kind` when there is no output yet).

    str stays str; messages become an `AIMessage` (an `AIMessageChunk` for chunks). Returns
    `None` for anything else: a refusal can't be expressed there, so the caller must block.
    """
    kind = type(like) if like is not None else kind
    if kind is not None and issubclass(kind, str):
        return refusal
    if kind is None or issubclass(kind, BaseMessage):
        cls = AIMessageChunk if kind is not None and issubclass(kind, BaseMessageChunk) else AIMessage
        return cls(
            content=refusal,
            id=getattr(like, "id", None),
            response_metadata={"finish_reason": "content_filter"},
        )
    return None


def refusal_chunk(kind: type | None, refusal: str, message_id: str | None = None) -> Any:
    """A refusal as one stream chunk: str for str streams, else an `AIMessageChunk`."""
    if kind is not None and issubclass(kind, str):
        return refusal
    if kind is None or issubclass(kind, BaseMessage):
        return AIMessageChunk(
            content=refusal, id=message_id, response_metadata={"finish_reason": "content_filter"}
        )
    return None


def _is_tap(handler: Any) -> bool:
    return isinstance(handler, (_StreamingCallbackHandler, _V2StreamingCallbackHandler))


def without_stream_taps(config: RunnableConfig) -> RunnableConfig:
    """The config for the guarded inner call, minus handlers that tap its raw stream.

    Handlers behind `astream_events`, `astream_log` and LangGraph's `stream_mode="messages"`
    forward every token of every run they see. The inner run's tokens are unchecked, so those
    handlers only see the guarded run's (moderated) output. Tracers and other handlers stay.
    """
    callbacks = config.get("callbacks")
    if isinstance(callbacks, BaseCallbackManager):
        if any(_is_tap(h) for h in (*callbacks.handlers, *callbacks.inheritable_handlers)):
            callbacks = callbacks.copy()
            callbacks.handlers = [h for h in callbacks.handlers if not _is_tap(h)]
            callbacks.inheritable_handlers = [h for h in callbacks.inheritable_handlers if not _is_tap(h)]
    elif isinstance(callbacks, list):
        callbacks = [h for h in callbacks if not _is_tap(h)]
    else:
        return config
    return {**config, "callbacks": callbacks}
