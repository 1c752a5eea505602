"""`GuardedOpenAI` and `AsyncGuardedOpenAI`: the user's client, wrapped by composition.

Guarded: `chat.completions.create` and `.parse`, `responses.create` and `.parse` (streaming
included for `create`): each call is wrapped in its codec (`ChatCall`, `ResponsesCall`) and run
by the guardrail kernel (`guardrail.invoke`, `open_stream` and their async twins). Of the
wrapped client's other attributes, only those on the allow-list in `_access` are forwarded
(embeddings, files, models, moderations, settings, ...): the rest raise `AttributeError`
pointing to `client.unguarded`, the bypass on purpose; on a guarded resource only `delete` is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import openai

from guardrail import (
    ConfigError,
    Guard,
    GuardOptions,
    OnBlock,
    Reasoning,
    StreamMode,
    Verdict,
    ainvoke,
    aopen_stream,
    invoke,
    open_stream,
)

from guardrail_openai._access import CLIENT_ATTRIBUTES, RESOURCE_ATTRIBUTES, not_guarded
from guardrail_openai._chat import ChatCall
from guardrail_openai._responses import ResponsesCall

__all__ = ["AsyncGuardedOpenAI", "GuardedOpenAI", "GuardedResource"]


class GuardedResource:
    """A guarded `chat.completions` or `responses`. Use it through `GuardedOpenAI`.

    `stream`, `retrieve`, `with_raw_response` and the other attributes but `delete` raise
    `AttributeError` (see `_access`) and stay reachable through the client's `unguarded`.
    """

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


class _Chat:
    """`client.chat` with a guarded `completions` and nothing else."""

    def __init__(self, inner: Any, completions: Any) -> None:
        self._inner = inner
        self.completions = completions

    def __getattr__(self, name: str) -> Any:
        if name == "_inner":
            raise AttributeError(name)
        raise not_guarded(self, "chat", self._inner, name)


class _Client:
    _sync: bool

    def __init__(
        self,
        client: Any,
        guard: Guard,
        *,
        stream_mode: StreamMode | str = StreamMode.HOLD,
        every: int = 200,
        unit: str = "chars",
        optimistic: bool = False,
        on_block: OnBlock = "raise",
        on_verdict: Callable[[Verdict], object] | None = None,
        reasoning: Reasoning = "moderate",
        options: GuardOptions | None = None,
    ) -> None:
        wanted = openai.OpenAI if self._sync else openai.AsyncOpenAI
        if not isinstance(client, wanted):
            other = "AsyncGuardedOpenAI" if self._sync else "GuardedOpenAI"
            raise ConfigError(
                f"{type(self).__name__} wraps an {wanted.__name__} client, got "
                f"{type(client).__name__}; use {other} for the other kind"
            )
        if not isinstance(guard, Guard):
            raise ConfigError(f"guard must be a guardrail.Guard, got {type(guard).__name__}")
        self.unguarded = client
        self.guard = guard
        self.options = options or GuardOptions(
            stream_mode=stream_mode, every=every, unit=unit, optimistic=optimistic,
            on_block=on_block, on_verdict=on_verdict, reasoning=reasoning,
        )
        if not isinstance(self.options, GuardOptions):
            raise ConfigError(f"options must be a guardrail.GuardOptions, got {type(self.options).__name__}")
        resource = lambda inner, codec: GuardedResource(inner, codec, guard, self.options, sync=self._sync)  # noqa: E731
        self.chat = _Chat(client.chat, resource(client.chat.completions, ChatCall))
        self.responses = resource(client.responses, ResponsesCall)

    def __getattr__(self, name: str) -> Any:
        if name == "unguarded":  # not set yet: a half-built object must not recurse
            raise AttributeError(name)
        if name in CLIENT_ATTRIBUTES:
            return getattr(self.unguarded, name)
        raise not_guarded(self, "", self.unguarded, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.unguarded!r}, {self.guard!r})"

    def with_options(self, **kwargs: Any) -> Any:
        """The wrapped client's `with_options(...)`, guarded with the same guard and options."""
        return type(self)(self.unguarded.with_options(**kwargs), self.guard, options=self.options)

    copy = with_options


class GuardedOpenAI(_Client):
    """An `openai.OpenAI` client whose chat completions and responses are guarded.

    >>> from openai import OpenAI
    >>> from guardrail import Guard
    >>> client = GuardedOpenAI(OpenAI(), Guard(["dangerous"]), stream_mode="hold")  # doctest: +SKIP
    >>> client.chat.completions.create(model="gpt-4o-mini",
    ...     messages=[{"role": "user", "content": "hi"}])       # a real ChatCompletion  # doctest: +SKIP

    A blocked input or output raises `guardrail.Blocked` (or, with `on_block="refuse"` and for
    `rewrite` policies, returns the refusal with finish reason `content_filter`). A request the
    guard can't read for sure (a role not exactly OpenAI's, no user message) raises
    `guardrail.MessageError` before anything is sent. The guard's options are this
    constructor's (see `guardrail.GuardOptions`); OpenAI's keyword arguments pass through untouched.
    Attributes that could reach a model unguarded (`completions`, `beta`, `with_raw_response`,
    ...) raise `AttributeError`; `client.unguarded` is the wrapped client, for bypassing on purpose.
    """

    _sync = True


class AsyncGuardedOpenAI(_Client):
    """The `openai.AsyncOpenAI` twin of `GuardedOpenAI`; `create` is awaited, streams are async.

    >>> client = AsyncGuardedOpenAI(AsyncOpenAI(), guard, optimistic=True)   # doctest: +SKIP
    >>> stream = await client.chat.completions.create(model="m", messages=msgs, stream=True)  # doctest: +SKIP
    """

    _sync = False
