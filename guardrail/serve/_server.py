"""From a configuration file to a running server: what `guardrail serve` does.

    guardrail serve --config guard.toml                       # 127.0.0.1:8080
    uvicorn --factory guardrail.serve:app_from_env            # GUARDRAIL_CONFIG=guard.toml
    gunicorn -k uvicorn.workers.UvicornWorker 'guardrail.serve:app_from_config("guard.toml")'

Settings come from flags > environment (`GUARDRAIL_SERVE_API_KEYS`) > the `[serve]` table >
defaults. Each worker process loads its own model; one worker is the usual choice.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette

from guardrail._audit import JsonlAudit, SqliteAudit
from guardrail._config import load_config, load_serve_table
from guardrail.serve._app import create_app
from guardrail.serve._settings import ServeSettings

if TYPE_CHECKING:
    from guardrail._scoring import Scorer

__all__ = ["app_from_config", "app_from_env", "load_settings", "serve"]


def load_settings(
    path: str | os.PathLike[str] | None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServeSettings:
    """`ServeSettings` from the file's `[serve]` table, the environment, then `overrides` (flags)."""
    table = load_serve_table(path, environ=environ)
    table.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return ServeSettings.from_table(table, where=f"{path or 'config'}: serve")


def app_from_config(
    path: str | os.PathLike[str] | None = None,
    *,
    settings: ServeSettings | None = None,
    scorer: Scorer | None = None,
    environ: Mapping[str, str] | None = None,
) -> Starlette:
    """The app for a configuration file: its guard, its `[serve]` settings and audit log."""
    settings = settings or load_settings(path, environ=environ)
    guard = load_config(path, environ=environ).build_guard(scorer=scorer)
    closers = []
    if settings.audit is not None:
        audit_path = Path(settings.audit).expanduser()
        if path is not None and not audit_path.is_absolute():  # like model.adapter: beside the config
            audit_path = Path(path).parent / audit_path
        sink_type = SqliteAudit if settings.audit_format == "sqlite" else JsonlAudit
        sink = sink_type(audit_path, include_content=settings.audit_include_content)
        # Config.build_guard takes no observers; the guard is ours, so the sink joins its list.
        guard.observers = (*guard.observers, sink)
        closers.append(sink.close)
    return create_app(guard, settings=settings, on_shutdown=closers)


def app_from_env() -> Starlette:
    """For `uvicorn --factory`: the configuration file named by `GUARDRAIL_CONFIG` (or defaults)."""
    return app_from_config(os.environ.get("GUARDRAIL_CONFIG"))


def serve(
    path: str | os.PathLike[str] | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    allow_remote: bool | None = None,
    scorer: Scorer | None = None,
    log_level: str = "info",
) -> None:
    """Run the service under uvicorn until SIGINT/SIGTERM, then drain and close.

    Raises `ConfigError` for bad settings, before any model loads: among them a non-loopback
    `host` with no API keys and no `allow_remote`.
    """
    import uvicorn

    settings = load_settings(path, overrides={"host": host, "port": port, "allow_remote": allow_remote})
    settings.check_bind()
    app = app_from_config(path, settings=settings, scorer=scorer)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        lifespan="on",
        # uvicorn drains requests in flight on SIGTERM; past this, what is left is cancelled.
        timeout_graceful_shutdown=int(settings.request_timeout) + 5,
    )
    uvicorn.Server(config).run()
