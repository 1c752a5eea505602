"""A fake OpenAI server for tests and offline examples: real HTTP bodies, real SSE streams.

It answers `POST /chat/completions` and `POST /responses` (streaming or not) through an
`httpx.MockTransport`, so the real `openai` client parses what it sends into real openai types;
`serve()` answers the same over real HTTP on a loopback port, for clients built as users build
them (`openai.OpenAI(base_url=...)`, the client's own HTTP stack).

>>> server = FakeOpenAI("Hello there!")
>>> client = server.client()
>>> client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content
'Hello there!'
>>> server.requests[-1]["body"]["model"]
'm'
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import openai

__all__ = ["FakeOpenAI"]


def _pieces(text: str) -> list[str]:
    """Token-like pieces: each word with the whitespace before it (`"Hi", " there"`)."""
    return re.findall(r"\s*\S+", text) or ([text] if text else [])


def _sse(event: dict[str, Any], *, named: bool) -> bytes:
    head = f"event: {event['type']}\n" if named else ""
    return f"{head}data: {json.dumps(event)}\n\n".encode()


class FakeOpenAI:
    """Canned completions over HTTP. `reply` is a string or a function of the request body.

    `tool_call` (`{"name": ..., "arguments": ...}`) adds a function call after the text.
    `reasoning` adds reasoning text before it: as the extra field `reasoning_field` of a chat
    message and its stream deltas (`reasoning_content`, as vLLM and DeepSeek send it), and as a
    `reasoning` item with that summary text in responses.
    `delay` (seconds) waits before answering (async clients only). `requests` records each
    request's path, JSON body and `Authorization` header; `events_sent` counts stream events the
    client pulled; `cancelled` counts async requests cancelled while waiting.
    """

    def __init__(
        self,
        reply: str | Callable[[dict[str, Any]], str] = "Hello!",
        *,
        tool_call: dict[str, str] | None = None,
        reasoning: str | None = None,
        reasoning_field: str = "reasoning_content",
        delay: float = 0.0,
        model: str = "fake-model",
    ) -> None:
        self.reply = reply
        self.tool_call = tool_call
        self.reasoning = reasoning
        self.reasoning_field = reasoning_field
        self.delay = delay
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.events_sent = 0
        self.cancelled = 0

    # --- clients -----------------------------------------------------------------------------
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(lambda request: self._respond(request, asynchronous=False))

    def async_transport(self) -> httpx.MockTransport:
        async def handler(request: httpx.Request) -> httpx.Response:
            if self.delay:
                try:
                    await asyncio.sleep(self.delay)
                except asyncio.CancelledError:
                    self.cancelled += 1
                    raise
            return self._respond(request, asynchronous=True)

        return httpx.MockTransport(handler)

    def client(self, **kwargs: Any) -> openai.OpenAI:
        http = httpx.Client(transport=self.transport())
        # openai 3.x types its client as httpx2's; httpx's has the same interface and works.
        return openai.OpenAI(api_key="fake", base_url="http://fake/v1", http_client=http, max_retries=0, **kwargs)  # type: ignore[arg-type]

    def async_client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        http = httpx.AsyncClient(transport=self.async_transport())
        return openai.AsyncOpenAI(
            api_key="fake", base_url="http://fake/v1", http_client=http, max_retries=0, **kwargs  # type: ignore[arg-type]
        )

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Serve over real HTTP on 127.0.0.1 (a free port); yields the base URL (`.../v1`).

        >>> with FakeOpenAI("Hi!").serve() as base_url:                 # doctest: +SKIP
        ...     openai.OpenAI(base_url=base_url, api_key="k").chat.completions.create(...)
        """
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("content-length") or 0)
                headers = {"authorization": self.headers.get("authorization", "")}
                request = httpx.Request("POST", f"http://fake{self.path}", content=self.rfile.read(length),
                                        headers=headers)
                response = fake._respond(request, asynchronous=False)
                body = b"".join(response.iter_bytes())
                self.send_response(response.status_code)
                self.send_header("content-type", response.headers.get("content-type", "application/json"))
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/v1"
        finally:
            server.shutdown()
            server.server_close()

    # --- HTTP ----------------------------------------------------------------------------------
    def _respond(self, request: httpx.Request, *, asynchronous: bool) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        path = request.url.path.removeprefix("/v1")
        self.requests.append({"path": path, "body": body, "authorization": request.headers.get("authorization")})
        text = self.reply(body) if callable(self.reply) else self.reply
        model = body.get("model", self.model)
        if path == "/chat/completions":
            events, named, done = self._chat_events(text, model, body), False, True
            whole = self._chat_completion(text, model)
        elif path == "/responses":
            events, named, done = self._response_events(text, model), True, False
            whole = self._response(text, model, "completed")
        else:
            return httpx.Response(404, json={"error": {"message": f"no fake for {path}", "type": "not_found"}})
        if not body.get("stream"):
            return httpx.Response(200, json=whole)
        frames = [_sse(e, named=named) for e in events] + ([b"data: [DONE]\n\n"] if done else [])
        stream = self._async_frames(frames) if asynchronous else self._frames(frames)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=stream)

    def _frames(self, frames: list[bytes]) -> Iterator[bytes]:
        for frame in frames:
            self.events_sent += 1
            yield frame

    async def _async_frames(self, frames: list[bytes]) -> AsyncIterator[bytes]:
        for frame in frames:
            self.events_sent += 1
            yield frame

    # --- chat completions ------------------------------------------------------------------------
    def _tool_calls(self) -> list[dict[str, Any]]:
        if not self.tool_call:
            return []
        return [{"id": "call_1", "type": "function", "function": dict(self.tool_call)}]

    def _chat_completion(self, text: str, model: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if self.reasoning is not None:
            message[self.reasoning_field] = self.reasoning
        if self.tool_call:
            message["tool_calls"] = self._tool_calls()
        return {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1700000000, "model": model,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if self.tool_call else "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": len(_pieces(text)), "total_tokens": 5 + len(_pieces(text))},
        }

    def _chat_events(self, text: str, model: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000,
                    "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({self.reasoning_field: piece}) for piece in _pieces(self.reasoning or "")]
        events += [chunk({"content": piece}) for piece in _pieces(text)]
        if self.tool_call:
            call = self.tool_call
            events.append(chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                 "function": {"name": call["name"], "arguments": ""}}]}))
            events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                       for piece in _pieces(call["arguments"])]
        events.append(chunk({}, "tool_calls" if self.tool_call else "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000,
                           "model": model, "choices": [],
                           "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}})
        return events

    # --- responses --------------------------------------------------------------------------------
    def _output(self, text: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if self.reasoning is not None:
            items.append({"type": "reasoning", "id": "rs_fake", "status": "completed",
                          "summary": [{"type": "summary_text", "text": self.reasoning}]})
        items.append({
            "type": "message", "id": "msg_fake", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        })
        if self.tool_call:
            items.append({"type": "function_call", "id": "fc_fake", "call_id": "call_1",
                          "name": self.tool_call["name"], "arguments": self.tool_call["arguments"],
                          "status": "completed"})
        return items

    def _response(self, text: str, model: str, status: str, output: bool = True) -> dict[str, Any]:
        return {
            "id": "resp_fake", "object": "response", "created_at": 1700000000, "model": model,
            "status": status, "output": self._output(text) if output else [],
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
        }

    def _response_events(self, text: str, model: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": self._response(text, model, "in_progress", output=False)},
        ]
        for index, item in enumerate(self._output(text)):
            events += self._item_events(item, index)
        events.append({"type": "response.completed", "response": self._response(text, model, "completed")})
        return [{**event, "sequence_number": n} for n, event in enumerate(events)]

    def _item_events(self, item: dict[str, Any], index: int) -> list[dict[str, Any]]:
        """`output_item.added`, the item's deltas, `output_item.done`."""
        at = {"output_index": index, "item_id": item["id"]}
        if item["type"] == "message":
            text = item["content"][0]["text"]
            part = {"type": "output_text", "text": "", "annotations": []}
            started = {**item, "status": "in_progress", "content": []}
            middle = [{"type": "response.content_part.added", **at, "content_index": 0, "part": part}]
            middle += [{"type": "response.output_text.delta", **at, "content_index": 0, "delta": piece,
                        "logprobs": []} for piece in _pieces(text)]
            middle += [
                {"type": "response.output_text.done", **at, "content_index": 0, "text": text, "logprobs": []},
                {"type": "response.content_part.done", **at, "content_index": 0, "part": {**part, "text": text}},
            ]
        elif item["type"] == "reasoning":
            text = item["summary"][0]["text"]
            started = {**item, "status": "in_progress", "summary": []}
            middle = [{"type": "response.reasoning_summary_text.delta", **at, "summary_index": 0, "delta": piece}
                      for piece in _pieces(text)]
            middle.append({"type": "response.reasoning_summary_text.done", **at, "summary_index": 0, "text": text})
        else:
            started = {**item, "arguments": "", "status": "in_progress"}
            middle = [{"type": "response.function_call_arguments.delta", **at, "delta": piece}
                      for piece in _pieces(item["arguments"])]
        return [
            {"type": "response.output_item.added", "output_index": index, "item": started},
            *middle,
            {"type": "response.output_item.done", "output_index": index, "item": item},
        ]
