"""Responses API: what to check in a request, a `Response` and a stream event; how to refuse.

Pure like `_chat`. The user turn is the latest item of `input` with role `user` (or `input`
itself when it is a string); `instructions` are the developer's and are not scored. The checked
output text is every output message's text and refusal, reasoning text and summaries,
function-call arguments and custom tool input, so tool arguments and reasoning are moderated
like text. A refusal is a genuine `Response` with status `incomplete` and
`incomplete_details.reason == "content_filter"`.

Before sending, every message-shaped input item (no `type`, or `type: "message"`) must have a
role that is exactly `user`, `system`, `developer` or `assistant`, and a bare string in the
list is refused (`MessageError`); typed items such as `function_call_output` are not the user's
words. A request with no user text is refused too, unless it continues a stored conversation
(`previous_response_id` or `conversation`), whose user turn an earlier call sent: that is how
tool outputs go back to the model.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from openai.types.responses import (
    Response,
    ResponseContentPartAddedEvent,
    ResponseIncompleteEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
)
from openai.types.responses.response import IncompleteDetails

from guardrail import Call, ChunkReader, GuardOptions, MessageError, tool_call_text
from guardrail.shapes import TEXT_DELTAS, field, item_texts
from guardrail_openai._common import INPUT_ROLES, as_sequence, check_extra_body, given, message_role

__all__ = ["ResponseEvents", "ResponsesCall"]

# Request parameters the guard reads, which `extra_body` must not replace.
_READ = ("input", "stream", "previous_response_id", "conversation", "prompt")


def _refusal_message(refusal: str, *, item_id: str, status: str) -> ResponseOutputMessage:
    content = [ResponseOutputText(type="output_text", text=refusal, annotations=[])]
    return ResponseOutputMessage(
        id=item_id, type="message", role="assistant", status=status, content=content  # type: ignore[arg-type]
    )


def _refused(response: Response, message: ResponseOutputMessage) -> Response:
    return response.model_copy(
        update={
            "output": [message],
            "status": "incomplete",
            "incomplete_details": IncompleteDetails(reason="content_filter"),
        }
    )


class ResponsesCall(Call):
    """One `responses` request: read, sent and refused (a `guardrail.Call`)."""

    name = "responses"

    def __init__(self, method: Callable[..., Any], kwargs: Mapping[str, Any], options: GuardOptions) -> None:
        self.kwargs = dict(kwargs)
        check_extra_body(self.kwargs, _READ)
        self.conversation: Sequence[Any] = self._conversation(self.kwargs)
        self.streaming = self.kwargs.get("stream") is True
        self._method = method

    def start(self) -> Any:
        return self._method(**self.kwargs)

    @staticmethod
    def _conversation(kwargs: dict[str, Any]) -> list[Any]:
        """The input's messages; pins an iterable `input` into `kwargs` as the list checked.

        Raises `MessageError` for a message-shaped item without an exact role, and for a
        request with no user text that does not continue a stored conversation.
        """
        value = kwargs.get("input")
        if isinstance(value, str):
            return [{"role": "user", "content": value}]
        items: list[Any] = []
        if given(value):
            items = kwargs["input"] = as_sequence(value, "input")
        messages = [
            {"role": message_role(item, n, INPUT_ROLES, "input"), "content": field(item, "content")}
            for n, item in enumerate(items)
            if field(item, "type") in (None, "message")  # a bare string is message-shaped too
        ]
        continuing = given(kwargs.get("previous_response_id")) or given(kwargs.get("conversation"))
        if not continuing and not any(m["role"] == "user" for m in messages):
            raise MessageError(
                "input has no user text, so the guard has nothing to check and sends nothing; "
                "pass the user's words as input (a string or a message with role 'user')"
            )
        return messages

    def outputs(self, response: Response) -> list[str]:
        return ["\n".join(t for item in response.output for t in item_texts(item) if t)]

    def refuse(self, response: Response, indexes: set[int], refusal: str) -> Response:
        item_id = f"msg_guardrail_{uuid.uuid4().hex}"
        return _refused(response, _refusal_message(refusal, item_id=item_id, status="incomplete"))

    def refusal(self, refusal: str) -> Response:
        """The response returned when the input is refused and OpenAI is never called."""
        model = self.kwargs.get("model")
        response = Response(
            id=f"resp_guardrail_{uuid.uuid4().hex}",
            object="response",
            created_at=time.time(),
            model=model if isinstance(model, str) else "",
            output=[],
            parallel_tool_calls=True,
            tool_choice="auto",
            tools=[],
        )
        return self.refuse(response, {0}, refusal)

    def reader(self) -> ResponseEvents:
        return ResponseEvents(self)


class ResponseEvents(ChunkReader):
    """Per-stream reader of response stream events (a `guardrail.ChunkReader`); collects tool
    calls to check at the end and knows enough to append a refusal."""

    def __init__(self, call: ResponsesCall) -> None:
        self.call = call
        self.snapshot: Response | None = None
        self.sequence = -1
        self.output_index = -1
        self.calls: dict[str, list[str]] = {}  # item id -> [name, arguments]

    def text(self, event: Any) -> str:
        self.sequence = max(self.sequence, getattr(event, "sequence_number", -1))
        self.output_index = max(self.output_index, getattr(event, "output_index", -1))
        if isinstance(getattr(event, "response", None), Response):
            self.snapshot = event.response
        self._collect_call(event)
        delta = getattr(event, "delta", None)
        return delta if getattr(event, "type", None) in TEXT_DELTAS and isinstance(delta, str) else ""

    def _collect_call(self, event: Any) -> None:
        kind, item = getattr(event, "type", ""), getattr(event, "item", None)
        if item is not None and getattr(item, "type", None) in ("function_call", "custom_tool_call"):
            arguments = getattr(item, "arguments", None) or getattr(item, "input", None) or ""
            self.calls[item.id or ""] = [item.name or "", arguments]  # added: "", done: whole
        elif kind.startswith(("response.function_call_arguments.", "response.custom_tool_call_input.")):
            call = self.calls.setdefault(getattr(event, "item_id", ""), ["", ""])
            whole = getattr(event, "arguments", None) or getattr(event, "input", None)
            call[1] = whole if isinstance(whole, str) else call[1] + (getattr(event, "delta", "") or "")

    def extra_text(self) -> str:
        return "\n".join(tool_call_text(name, arguments) for name, arguments in self.calls.values())

    def held(self, event: Any) -> bool:
        kind = getattr(event, "type", "")
        if kind.startswith(("response.function_call_arguments.", "response.custom_tool_call_input.")):
            return True
        item = getattr(event, "item", None)
        return getattr(item, "type", None) in ("function_call", "custom_tool_call")

    def refusal(self, refusal: str, *, after_text: bool = False) -> list[Any]:
        """Events that add one message saying `refusal`, then `response.incomplete`."""
        if self.snapshot is None:
            base = self.call.refusal(refusal)
        else:
            base = self.snapshot
        item_id = f"msg_guardrail_{uuid.uuid4().hex}"
        index = self.output_index + 1
        seq = self.sequence + 1
        done = _refusal_message(refusal, item_id=item_id, status="incomplete")
        return [
            ResponseOutputItemAddedEvent(
                type="response.output_item.added",
                item=_refusal_message("", item_id=item_id, status="in_progress").model_copy(
                    update={"content": []}
                ),
                output_index=index,
                sequence_number=seq,
            ),
            ResponseContentPartAddedEvent(
                type="response.content_part.added",
                content_index=0,
                item_id=item_id,
                output_index=index,
                part=ResponseOutputText(type="output_text", text="", annotations=[]),
                sequence_number=seq + 1,
            ),
            ResponseTextDeltaEvent(
                type="response.output_text.delta",
                content_index=0,
                delta=refusal,
                item_id=item_id,
                logprobs=[],
                output_index=index,
                sequence_number=seq + 2,
            ),
            ResponseOutputItemDoneEvent(
                type="response.output_item.done", item=done, output_index=index, sequence_number=seq + 3
            ),
            ResponseIncompleteEvent(
                type="response.incomplete", response=_refused(base, done), sequence_number=seq + 4
            ),
        ]
