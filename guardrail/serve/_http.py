"""The HTTP edge: errors as OpenAI-shaped JSON, the request body as JSON, and the gate every
request passes (authentication, the loopback rule, the body size limit, HTTP metrics).

Errors answer `{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`, the shape
OpenAI's clients read, so `openai.BadRequestError` carries our message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guardrail.serve._metrics import Metrics
from guardrail.serve._settings import ServeSettings, is_loopback_host

__all__ = ["ApiError", "Gate", "error_response", "json_object", "read_json"]

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
          429: "rate_limit_error", 503: "service_unavailable", 504: "timeout"}


class ApiError(Exception):
    """An answer other than 200, raised anywhere in a handler and turned into JSON."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = dict(headers or {})


def error_response(error: ApiError) -> JSONResponse:
    body = {"error": {"message": error.message, "type": _TYPES.get(error.status, "server_error"),
                      "param": error.param, "code": error.code}}
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request) -> Any:
    """The body parsed as JSON (NaN and Infinity refused), or a 400 that says why."""
    body = await request.body()
    try:
        return json.loads(body, parse_constant=_no_constant)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise ApiError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None


def json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(value).__name__}",
                       code="invalid_body")
    return value


class _BodyTooLarge(Exception):
    pass


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class Gate:
    """ASGI middleware in front of every route.

    Order: health paths pass; then authentication (a configured key as `Authorization: Bearer
    KEY` or `x-api-key: KEY`, compared in constant time) or, with no keys, the loopback rule;
    then the body limit (`Content-Length`, and the bytes actually received for chunked bodies).
    """

    def __init__(self, app: ASGIApp, *, settings: ServeSettings, metrics: Metrics,
                 open_paths: Iterable[str], routes: Iterable[str]) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.open_paths = frozenset(open_paths)
        self.routes = frozenset(routes)
        # Digests have one length, so compare_digest's time says nothing about a key's length.
        self._keys = tuple(_digest(k) for k in settings.api_keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else "other"
        started = time.perf_counter()
        status: list[int] = []

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self._guarded(scope, receive, send_status)
        finally:
            self.metrics.requests.labels(route, str(status[0] if status else 500)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = None if scope["path"] in self.open_paths else self._refusal(scope)
        if refusal is None:
            refusal = self._declared_too_large(scope)
        if refusal is not None:
            await error_response(refusal)(scope, receive, send)
            return
        started: list[bool] = []

        async def tracked_send(message: Message) -> None:
            started.append(True)
            await send(message)

        try:
            await self.app(scope, self._limited(receive), tracked_send)
        except _BodyTooLarge:
            if started:
                raise
            await error_response(self._too_large())(scope, receive, send)

    def _refusal(self, scope: Scope) -> ApiError | None:
        if self._keys:
            given = _presented_key(scope)
            if given is None or not self._matches(given):
                why = "missing API key" if given is None else "invalid API key"
                return ApiError(401, f"{why}: send 'Authorization: Bearer <key>'", code="invalid_api_key",
                                headers={"WWW-Authenticate": "Bearer"})
            return None
        client = scope.get("client")
        if self.settings.allow_remote or (client and is_loopback_host(str(client[0]))):
            return None
        return ApiError(403, "no API keys are configured, so only loopback clients are answered; "
                             "configure serve.api_keys (or allow_remote)", code="loopback_only")

    def _matches(self, given: str) -> bool:
        digest = _digest(given)
        found = False
        for key in self._keys:  # every key is compared: no early exit
            found |= hmac.compare_digest(digest, key)
        return found

    def _too_large(self) -> ApiError:
        return ApiError(413, f"the request body is larger than {self.settings.max_body_bytes} bytes",
                        code="body_too_large")

    def _declared_too_large(self, scope: Scope) -> ApiError | None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return ApiError(400, "Content-Length is not a number", code="invalid_body")
                return self._too_large() if length > self.settings.max_body_bytes else None
        return None

    def _limited(self, receive: Receive) -> Receive:
        received = 0
        limit = self.settings.max_body_bytes

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        return limited


def _presented_key(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():  # the other header gateways send keys in
            return value.decode("latin-1").strip()
    return None
