"""Which attributes of the wrapped client a guarded client hands out: an allow-list.

A guarded client forwards an attribute only when it can neither send text for a model to
answer nor hand back model text. Everything else raises `AttributeError` naming the way to
bypass the guard on purpose, `client.unguarded`:

- on the client: `completions` (legacy, with a `prompt`), `beta` (assistants, threads, chat,
  realtime), `batches`, `realtime`, `conversations`, `audio`, `images`, `evals`, ...,
  `with_raw_response` / `with_streaming_response` (they reach `chat.completions.create`
  unguarded), and the raw HTTP methods (`post`, `request`, ...);
- on `client.chat`: everything but the guarded `completions`;
- on the guarded resources: everything but `create`, `parse` and `delete`. `stream` is not
  guarded (use `create(stream=True)`); `retrieve`, `list`, `update`, `cancel`, `compact`, ...
  return stored model text, which may be the very output the guard refused.

Why an allow-list and not a deny-list: the `openai` package adds resources that generate text
often, and a raw-response view exists at every level. A deny-list goes out of date the day a
new path ships and then fails open; an allow-list fails closed: a new harmless attribute is one
line here, a new text path stays refused until it is guarded.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CLIENT_ATTRIBUTES", "RESOURCE_ATTRIBUTES", "not_guarded"]

CLIENT_ATTRIBUTES = frozenset(
    {
        # resources that neither generate text nor return model text
        "embeddings",
        "files",
        "models",
        "moderations",
        "uploads",
        "vector_stores",
        "webhooks",
        # the client's settings and lifecycle
        "api_key",
        "auth_headers",
        "base_url",
        "close",
        "custom_auth",
        "default_headers",
        "default_query",
        "is_closed",
        "max_retries",
        "organization",
        "platform_headers",
        "project",
        "timeout",
        "user_agent",
        "webhook_secret",
        "websocket_base_url",
    }
)
# Besides the guarded `create` and `parse`, set on the resource itself.
RESOURCE_ATTRIBUTES = frozenset({"delete"})


def not_guarded(owner: object, path: str, inner: Any, name: str) -> AttributeError:
    """The error for `owner.name`: plain when `inner` has no such attribute either."""
    if name.startswith("__") or not hasattr(inner, name):
        return AttributeError(f"{type(owner).__name__!r} object has no attribute {name!r}")
    dotted = f"{path}.{name}" if path else name
    return AttributeError(
        f"{dotted} is not guarded (it can send text to a model or return model text unchecked); "
        f"use the guarded create(...), or client.unguarded.{dotted} to bypass the guard on purpose"
    )
