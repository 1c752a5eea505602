"""guardrail as an HTTP service (`pip install "guardrail[serve]"`): starlette, uvicorn, prometheus.

    guardrail serve --config guard.toml

Endpoints: `POST /v1/moderations` (OpenAI's moderation API), `POST /v1/checks` (a verdict for
OpenAI-shaped messages), `POST /beta/litellm_basic_guardrail_api` (LiteLLM's Generic Guardrail
API), `GET /healthz`, `GET /readyz`, `GET /metrics`; with `[serve] upstream`, the guarding
proxy `POST /v1/chat/completions` and `POST /v1/responses`. See `create_app` for the app factory and
`ServeSettings` for the limits.

`import guardrail` does not import this package (nor starlette, uvicorn, prometheus_client).
"""

from guardrail.serve._app import OPEN_PATHS, create_app
from guardrail.serve._http import ApiError
from guardrail.serve._runtime import ServedGuard, served_guard
from guardrail.serve._server import app_from_config, app_from_env, load_settings, serve
from guardrail.serve._settings import ServeSettings

__all__ = [
    "OPEN_PATHS",
    "ApiError",
    "ServeSettings",
    "ServedGuard",
    "app_from_config",
    "app_from_env",
    "create_app",
    "load_settings",
    "serve",
    "served_guard",
]
