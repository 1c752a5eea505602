"""The app factory: a Starlette app around one guard.

>>> from guardrail import Guard
>>> from guardrail.serve import ServeSettings, create_app
>>> app = create_app(Guard(["hate"]), settings=ServeSettings(api_keys=("s3cret",)))  # doctest: +SKIP
>>> # uvicorn.run(app), or any ASGI server; `guardrail serve --config guard.toml` does both

Routes added later (the guarding proxy) come in through `routes=`; they sit behind the same gate
(keys, loopback rule, body limit) and check through `served_guard(request).check_many(...)`,
which applies readiness, admission, the deadline and the metrics.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from guardrail._exceptions import ConfigError
from guardrail._guard import Guard
from guardrail.serve import _endpoints as endpoints
from guardrail.serve._http import ApiError, Gate, error_response
from guardrail.serve._litellm import PATH as LITELLM_PATH
from guardrail.serve._litellm import litellm_guardrail
from guardrail.serve._metrics import Metrics
from guardrail.serve._proxy import Upstream, proxy_routes
from guardrail.serve._runtime import ServedGuard
from guardrail.serve._settings import ServeSettings

__all__ = ["OPEN_PATHS", "create_app"]

logger = logging.getLogger("guardrail.serve")

OPEN_PATHS = ("/healthz", "/readyz")
"""Paths answered without a key and from anywhere: they say only whether the service is up."""


def _builtin_routes() -> list[BaseRoute]:
    return [
        Route("/v1/moderations", endpoints.moderations, methods=["POST"]),
        Route("/v1/checks", endpoints.checks, methods=["POST"]),
        Route(LITELLM_PATH, litellm_guardrail, methods=["POST"]),
        Route("/healthz", endpoints.healthz, methods=["GET"]),
        Route("/readyz", endpoints.readyz, methods=["GET"]),
        Route("/metrics", endpoints.metrics, methods=["GET"]),
    ]


async def _api_error(request: Request, exc: Exception) -> Response:
    return error_response(exc if isinstance(exc, ApiError) else ApiError(500, str(exc)))


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        return await _server_error(request, exc)
    return error_response(ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                                   headers=exc.headers))


async def _server_error(request: Request, exc: Exception) -> Response:
    # Reached when, say, the audit log could not be written: the check fails rather than go unrecorded.
    return JSONResponse({"error": {"message": f"internal error: {type(exc).__name__}", "type": "server_error",
                                   "param": None, "code": None}}, status_code=500)


def create_app(
    guard: Guard,
    *,
    settings: ServeSettings | None = None,
    routes: Sequence[BaseRoute] = (),
    on_shutdown: Sequence[Callable[[], object]] = (),
) -> Starlette:
    """An ASGI app serving `guard`: moderations, checks, LiteLLM's guardrail API, health, metrics.

    At start-up the scorer loads in the background (`aload()`/`load()` when it has one, then a
    warm-up score unless `settings.warmup` is false); `/readyz` answers 200 after that, and
    checks before it get 503 with `Retry-After`. At shutdown, after the server has drained the
    requests in flight, the scorer is closed (`aclose()`/`close()`), then `on_shutdown` runs
    (a closer may be async). With `settings.upstream`, the guarding proxy's routes are mounted
    (`POST /v1/chat/completions`, `POST /v1/responses`; see `guardrail.serve._proxy`).
    """
    settings = settings or ServeSettings()
    if not isinstance(guard, Guard):
        raise ConfigError(f"create_app needs a guardrail.Guard, got {guard!r}")
    metrics = Metrics()
    served = ServedGuard(guard, settings=settings, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        served.start()
        try:
            yield
        finally:
            await served.stop()
            for close in closers:
                closing = close()
                if inspect.isawaitable(closing):
                    await closing

    closers: list[Callable[[], object]] = list(on_shutdown)
    upstream = None
    if settings.upstream is not None:  # the guarding proxy: chat completions and responses
        upstream = Upstream(settings)
        routes = [*proxy_routes(), *routes]
        closers.append(upstream.aclose)
    all_routes = [*_builtin_routes(), *routes]
    paths = [path for r in all_routes if isinstance(path := getattr(r, "path", None), str)]
    app = Starlette(
        routes=all_routes,
        middleware=[Middleware(Gate, settings=settings, metrics=metrics, open_paths=OPEN_PATHS, routes=paths)],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.guardrail = served
    app.state.upstream = upstream
    return app
