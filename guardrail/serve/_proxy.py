"""The guarding proxy: `POST /v1/chat/completions` and `POST /v1/responses`, forwarded to the
OpenAI-compatible server `[serve] upstream` names, guarded by the same kernel as the Python
wrapper. Any OpenAI client gets the guard by pointing its base URL here.

The input (the latest user turn) is checked before the upstream is called; a blocked input
never reaches it. The answer is checked whole, or, streamed, moderated as it goes (`stream_mode`
`hold` or `stream_first`, checked every `every` characters). A refusal answers in-band, as
`on_block = "refuse"` (the default): a completion whose choice says the guard's refusal with
`finish_reason: "content_filter"` (responses: status `incomplete`, reason `content_filter`),
or the same as the stream's last events. With `on_block = "error"`, a block answers 400 with
type `content_filter` instead (mid-stream, after the headers went out: an SSE `error` event).
Upstream errors pass through with their status and body. Checks go through `ServedGuard`, so
readiness, admission, the deadline and the metrics apply as on every other route.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from guardrail._exceptions import Blocked, MessageError
from guardrail._drivers import ainvoke, aopen_stream
from guardrail._kernel import Call, GuardOptions
from guardrail._messages import Turn
from guardrail._policies import Stage
from guardrail._verdict import Verdict
from guardrail.serve._codecs import ChatCodec, ResponsesCodec
from guardrail.serve._http import ApiError, json_object, read_json
from guardrail.serve._runtime import ServedGuard, served_guard
from guardrail.serve._settings import ServeSettings

__all__ = ["Upstream", "proxy_routes"]


class UpstreamError(Exception):
    """The upstream answered other than 200: passed on to the client as it came."""

    def __init__(self, status: int, content: bytes, content_type: str) -> None:
        super().__init__(f"upstream answered {status}")
        self.status, self.content, self.content_type = status, content, content_type


class Upstream:
    """The upstream server: one `httpx.AsyncClient` for the app; `aclose()` at shutdown."""

    def __init__(self, settings: ServeSettings) -> None:
        assert settings.upstream is not None
        self.url = settings.upstream.rstrip("/")
        headers = {"Authorization": f"Bearer {settings.upstream_api_key}"} if settings.upstream_api_key else {}
        timeout = httpx.Timeout(settings.upstream_timeout, connect=10.0)
        self.client = httpx.AsyncClient(headers=headers, timeout=timeout)

    def starter(self, path: str, body: dict[str, Any]) -> Callable[[], Any]:
        """What the kernel's `Start` does: the JSON answer, or (streaming) the events as dicts."""
        request = self.client.build_request("POST", f"{self.url}{path}", json=body)

        async def start() -> Any:
            response = await self.client.send(request, stream=True)
            if response.status_code != 200:
                content = await response.aread()
                await response.aclose()
                raise UpstreamError(response.status_code, content,
                                    response.headers.get("content-type", "application/json"))
            if body.get("stream") is True:
                return _events(response)
            try:
                return json.loads(await response.aread())
            except ValueError:
                raise ApiError(502, "the upstream answered 200 with a body that is not JSON", code="upstream_error") from None
            finally:
                await response.aclose()

        return start

    async def aclose(self) -> None:
        await self.client.aclose()


async def _events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The `data:` events of an SSE stream as dicts, until `[DONE]` or the end."""
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # `event:` names repeat the data's `type`; blank lines end events
            data = line[5:].strip()
            if data == "[DONE]":
                return
            if data:
                yield json.loads(data)
    finally:
        await response.aclose()


class _ServedChecks:
    """The app's guard as the kernel sees it, with each check made through `ServedGuard`."""

    def __init__(self, served: ServedGuard, endpoint: str) -> None:
        self.served, self.endpoint = served, endpoint

    def __getattr__(self, name: str) -> Any:
        return getattr(self.served.guard, name)

    async def acheck(self, messages: Any, stage: Stage) -> Verdict:
        [verdict] = await self.served.check_many([(messages, stage)], endpoint=self.endpoint)
        return verdict

    async def acheck_turn(self, turn: Turn, stage: Stage, *, message_index: int = -1) -> Verdict:
        return await self.served.check_turn(turn, stage, message_index=message_index, endpoint=self.endpoint)


def _options(settings: ServeSettings) -> GuardOptions:
    return GuardOptions(stream_mode=settings.stream_mode, every=settings.every,
                        on_block="raise" if settings.on_block == "error" else "refuse")


def _blocked(exc: Blocked) -> ApiError:
    return ApiError(400, str(exc), code="content_filter")


def _sse(event: dict[str, Any], named: bool) -> bytes:
    head = f"event: {event.get('type')}\n" if named and "type" in event else ""
    return f"{head}data: {json.dumps(event)}\n\n".encode()


async def _relay(stream: Any, named: bool, done: bool) -> AsyncIterator[bytes]:
    try:
        async for event in stream:
            yield _sse(event, named)
    except Blocked as exc:  # on_block = "error", after the headers went out
        yield _sse({"error": {"message": str(exc), "type": "content_filter", "param": None, "code": "content_filter"}},
                   named=False)
        return
    except ApiError as exc:  # a check failed mid-stream (busy, timeout): the stream ends with it
        yield _sse({"error": {"message": exc.message, "type": "server_error", "param": None, "code": exc.code}},
                   named=False)
        return
    finally:
        await stream.close()
    if done:
        yield b"data: [DONE]\n\n"


def _endpoint(path: str, codec: Callable[[dict[str, Any], Callable[[], Any]], Call], *, named: bool,
              done: bool) -> Callable[[Request], Any]:
    async def handle(request: Request) -> Response:
        body = json_object(await read_json(request))
        upstream: Upstream = request.app.state.upstream
        served = served_guard(request)
        try:
            call = codec(body, upstream.starter(path, body))
        except MessageError as exc:
            raise ApiError(400, str(exc), param="messages", code="invalid_messages") from None
        guard: Any = _ServedChecks(served, f"/v1{path}")
        options = _options(served.settings)
        try:
            if body.get("stream") is True:
                stream = await aopen_stream(guard, options, call)
                return StreamingResponse(_relay(stream, named, done), media_type="text/event-stream")
            return JSONResponse(await ainvoke(guard, options, call))
        except Blocked as exc:
            raise _blocked(exc) from None
        except UpstreamError as exc:
            return Response(exc.content, status_code=exc.status, media_type=exc.content_type)
        except httpx.HTTPError as exc:
            raise ApiError(502, f"the upstream could not be reached: {type(exc).__name__}: {exc}",
                           code="upstream_error") from None

    return handle


def proxy_routes() -> list[BaseRoute]:
    """The proxy's routes; the app needs `state.upstream` (an `Upstream`)."""
    return [
        Route("/v1/chat/completions", _endpoint("/chat/completions", ChatCodec, named=False, done=True),
              methods=["POST"]),
        Route("/v1/responses", _endpoint("/responses", ResponsesCodec, named=True, done=False), methods=["POST"]),
    ]
