"""The guarding proxy's codecs: chat completions and responses as plain JSON dicts.

Pure, like `guardrail_openai`'s codecs, and reading OpenAI's shapes through the same helpers
(`guardrail.shapes`), but over the JSON the upstream sends, so the service needs no `openai`
package. Each codec is a `guardrail.Call`
for the kernel; `start` is given by the proxy (`_proxy.py`), which does the HTTP.

Rules kept from the Python wrapper: every message needs one of OpenAI's roles, spelled exactly,
and a request with no user text is refused (`MessageError`, HTTP 400) before anything is sent;
reasoning text (`reasoning_content` / `reasoning`), refusals and tool-call arguments are
moderated like the answer; tool-call chunks wait for the final check; a refused answer ends
with `finish_reason: "content_filter"` (chat) or status `incomplete` with reason
`content_filter` (responses).
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from guardrail._exceptions import MessageError
from guardrail._kernel import Call
from guardrail._messages import tool_call_text
from guardrail._relay import ChunkReader
from guardrail.shapes import CHAT_ROLES, INPUT_ROLES, TEXT_DELTAS, item_texts, message_role, message_text

__all__ = ["ChatCodec", "ResponsesCodec"]

_TOOL_DELTAS = ("response.function_call_arguments.", "response.custom_tool_call_input.")
_NO_USER = "has no user text, so the guard has nothing to check and sends nothing"

Start = Callable[[], Awaitable[Any]]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --- chat completions ---------------------------------------------------------------------------
class ChatCodec(Call):
    """One `POST /chat/completions` body, as a `guardrail.Call`; `start` sends it upstream."""

    def __init__(self, body: dict[str, Any], start: Start) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise MessageError("'messages' must be a non-empty list of messages")
        roles = [message_role(m, n, CHAT_ROLES, "messages") for n, m in enumerate(messages)]
        if "user" not in roles:
            raise MessageError(f"messages {_NO_USER}")
        if body.get("stream") is True and body.get("n") not in (None, 1):
            raise MessageError("guarded streaming supports n=1 only; stream one choice per call")
        if body.get("audio") is not None or "audio" in (body.get("modalities") or ()):
            raise MessageError("audio output can't be checked; ask for text")
        self.body = body
        self.conversation = messages
        self.start = start  # type: ignore[method-assign]

    def outputs(self, result: dict[str, Any]) -> list[str]:
        return [message_text(_dict(c.get("message")), "\n") for c in result.get("choices") or ()]

    def refuse(self, result: dict[str, Any], indexes: set[int], refusal: str) -> dict[str, Any]:
        out = copy.deepcopy(result)
        for n, choice in enumerate(out.get("choices") or ()):
            if n in indexes:
                choice.update(message={"role": "assistant", "content": refusal, "refusal": None},
                              finish_reason="content_filter", logprobs=None)
        return out

    def refusal(self, refusal: str) -> dict[str, Any]:
        return {"id": f"chatcmpl-guardrail-{uuid.uuid4().hex}", "object": "chat.completion",
                "created": int(time.time()), "model": str(self.body.get("model") or ""),
                "choices": [{"index": 0, "finish_reason": "content_filter", "logprobs": None,
                             "message": {"role": "assistant", "content": refusal, "refusal": None}}]}

    def reader(self) -> ChatChunks:
        return ChatChunks(str(self.body.get("model") or ""))


class ChatChunks(ChunkReader):
    """Reads `chat.completion.chunk` dicts; collects tool calls to check whole at the end."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.latest: dict[str, Any] | None = None
        self.calls: dict[tuple[int, int], list[str]] = {}  # (choice, call index) -> [name, arguments]

    def text(self, chunk: dict[str, Any]) -> str:
        self.latest = chunk
        texts = []
        for choice in chunk.get("choices") or ():
            delta = _dict(_dict(choice).get("delta"))
            calls = [(_dict(c).get("index", 0), _dict(_dict(c).get("function"))) for c in delta.get("tool_calls") or ()]
            if delta.get("function_call") is not None:  # the legacy single call
                calls.append((-1, _dict(delta["function_call"])))
            for index, spec in calls:
                entry = self.calls.setdefault((_dict(choice).get("index", 0), index), ["", ""])
                entry[0] += spec.get("name") or ""
                entry[1] += spec.get("arguments") or ""
            texts.append(message_text(delta, "", calls=False))
        return "".join(texts)

    def held(self, chunk: dict[str, Any]) -> bool:
        deltas = [_dict(_dict(c).get("delta")) for c in chunk.get("choices") or ()]
        return any(d.get("tool_calls") or d.get("function_call") for d in deltas)

    def extra_text(self) -> str:
        return "\n".join(tool_call_text(name, arguments) for name, arguments in self.calls.values())

    def refusal(self, refusal: str, *, after_text: bool) -> list[Any]:
        last = self.latest or {}
        return [{"id": last.get("id") or f"chatcmpl-guardrail-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
                 "created": last.get("created") or int(time.time()), "model": last.get("model") or self.model,
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": refusal},
                              "finish_reason": "content_filter"}]}]


# --- responses ------------------------------------------------------------------------------------
def _refusal_message(refusal: str, item_id: str, status: str) -> dict[str, Any]:
    return {"type": "message", "id": item_id, "role": "assistant", "status": status,
            "content": [{"type": "output_text", "text": refusal, "annotations": []}]}


def _refused(response: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    return {**response, "output": [message], "status": "incomplete", "incomplete_details": {"reason": "content_filter"}}


class ResponsesCodec(Call):
    """One `POST /responses` body, as a `guardrail.Call`; `start` sends it upstream."""

    def __init__(self, body: dict[str, Any], start: Start) -> None:
        value = body.get("input")
        if isinstance(value, str):
            self.conversation: list[Any] = [{"role": "user", "content": value}]
        else:
            if value is not None and not isinstance(value, list):
                raise MessageError("'input' must be a string or a list of input items")
            self.conversation = [{"role": message_role(item, n, INPUT_ROLES, "input"), "content": item.get("content")}
                                 for n, item in enumerate(value or ())
                                 if not isinstance(item, Mapping) or item.get("type") in (None, "message")]
            continuing = body.get("previous_response_id") or body.get("conversation")
            if not continuing and not any(m["role"] == "user" for m in self.conversation):
                raise MessageError(f"input {_NO_USER}")
        self.body = body
        self.start = start  # type: ignore[method-assign]

    def outputs(self, result: dict[str, Any]) -> list[str]:
        return ["\n".join(t for item in result.get("output") or () for t in item_texts(item) if t)]

    def refuse(self, result: dict[str, Any], indexes: set[int], refusal: str) -> dict[str, Any]:
        return _refused(result, _refusal_message(refusal, f"msg_guardrail_{uuid.uuid4().hex}", "incomplete"))

    def refusal(self, refusal: str) -> dict[str, Any]:
        response = {"id": f"resp_guardrail_{uuid.uuid4().hex}", "object": "response", "created_at": time.time(),
                    "model": str(self.body.get("model") or ""), "output": [], "parallel_tool_calls": True,
                    "tool_choice": "auto", "tools": []}
        return self.refuse(response, {0}, refusal)

    def reader(self) -> ResponseEvents:
        return ResponseEvents(self)


class ResponseEvents(ChunkReader):
    """Reads response stream event dicts; collects tool calls to check whole at the end."""

    def __init__(self, codec: ResponsesCodec) -> None:
        self.codec = codec
        self.snapshot: dict[str, Any] | None = None
        self.sequence = -1
        self.output_index = -1
        self.calls: dict[str, list[str]] = {}  # item id -> [name, arguments]

    def text(self, event: dict[str, Any]) -> str:
        self.sequence = max(self.sequence, event.get("sequence_number", -1))
        self.output_index = max(self.output_index, event.get("output_index", -1))
        if isinstance(event.get("response"), dict):
            self.snapshot = event["response"]
        kind, item = event.get("type", ""), _dict(event.get("item"))
        if item.get("type") in ("function_call", "custom_tool_call"):
            self.calls[item.get("id") or ""] = [item.get("name") or "", item.get("arguments") or item.get("input") or ""]
        elif kind.startswith(_TOOL_DELTAS):
            call = self.calls.setdefault(event.get("item_id", ""), ["", ""])
            whole = event.get("arguments", event.get("input"))
            call[1] = whole if isinstance(whole, str) else call[1] + (event.get("delta") or "")
        delta = event.get("delta")
        return delta if kind in TEXT_DELTAS and isinstance(delta, str) else ""

    def held(self, event: dict[str, Any]) -> bool:
        kind = event.get("type", "")
        return kind.startswith(_TOOL_DELTAS) or _dict(event.get("item")).get("type") in ("function_call", "custom_tool_call")

    def extra_text(self) -> str:
        return "\n".join(tool_call_text(name, arguments) for name, arguments in self.calls.values())

    def refusal(self, refusal: str, *, after_text: bool) -> list[Any]:
        """Events that add one message saying `refusal`, then `response.incomplete`."""
        base = self.snapshot if self.snapshot is not None else self.codec.refusal(refusal)
        item_id, index, seq = f"msg_guardrail_{uuid.uuid4().hex}", self.output_index + 1, self.sequence + 1
        at = {"item_id": item_id, "output_index": index}
        done = _refusal_message(refusal, item_id, "incomplete")
        return [
            {"type": "response.output_item.added", "output_index": index, "sequence_number": seq,
             "item": {**_refusal_message("", item_id, "in_progress"), "content": []}},
            {"type": "response.content_part.added", **at, "content_index": 0, "sequence_number": seq + 1,
             "part": {"type": "output_text", "text": "", "annotations": []}},
            {"type": "response.output_text.delta", **at, "content_index": 0, "delta": refusal, "logprobs": [],
             "sequence_number": seq + 2},
            {"type": "response.output_item.done", "output_index": index, "item": done, "sequence_number": seq + 3},
            {"type": "response.incomplete", "response": _refused(base, done), "sequence_number": seq + 4},
        ]
