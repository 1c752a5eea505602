"""Guarded resources: `create` and `parse` go through the guardrail kernel.

A guarded `create(**kwargs)` wraps the request in its codec (`ChatCall` or `ResponsesCall`)
and hands it to `guardrail.invoke` / `open_stream` (or their async twins), which check the
input, send, and check the output or moderate the stream. Of the wrapped resource's other
attributes only `delete` is forwarded (see `_access`): `stream`, `retrieve`,
`with_raw_response` and the rest raise `AttributeError` and stay reachable through the
client's `unguarded` attribute, on purpose.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from guardrail import Guard, GuardOptions, ainvoke, aopen_stream, invoke, open_stream

from guardrail_openai._access import RESOURCE_ATTRIBUTES, not_guarded

__all__ = ["GuardedResource"]


class GuardedResource:
    """A guarded `chat.completions` or `responses`. Use it through `GuardedOpenAI`."""

    def __init__(self, inner: Any, codec: Any, guard: Guard, options: GuardOptions, *, sync: bool) -> None:
        self._inner = inner
        self._codec = codec
        self._guard = guard
        self._options = options
        self._sync = sync
        # plain attributes with the wrapped method's name, docstring and signature
        self.create = self._wrap(inner.create)
        if callable(getattr(inner, "parse", None)):
            self.parse = self._wrap(inner.parse)

    def __getattr__(self, name: str) -> Any:
        if name in ("_inner", "_codec"):  # not set yet: a half-built object must not recurse
            raise AttributeError(name)
        if name in RESOURCE_ATTRIBUTES:
            return getattr(self._inner, name)
        raise not_guarded(self, self._codec.name, self._inner, name)

    def __repr__(self) -> str:
        return f"<guarded {self._codec.name} of {self._inner!r}>"

    def _call(self, method: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        call = self._codec(method, kwargs, self._options)
        if self._sync:
            return (open_stream if call.streaming else invoke)(self._guard, self._options, call)
        return (aopen_stream if call.streaming else ainvoke)(self._guard, self._options, call)

    def _wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        if self._sync:
            return functools.wraps(method)(lambda **kwargs: self._call(method, kwargs))

        async def guarded(**kwargs: Any) -> Any:
            return await self._call(method, kwargs)

        return functools.wraps(method)(guarded)
