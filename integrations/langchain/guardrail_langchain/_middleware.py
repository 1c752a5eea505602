"""`GuardrailMiddleware`: guard every model call of a LangChain 1.x agent. Needs `langchain`.

Checking in `after_model` comes too late when the agent streams: the model's tokens have
already gone out through the stream handlers (langchain issue 35011). Here the checks run
inside `wrap_model_call` / `awrap_model_call`: the request's model is swapped for a
`GuardedChatModel` around it, so the input is checked before the model runs, its tokens are
moderated as they stream, and the inner model's raw tokens never reach a stream handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from guardrail import Guard, GuardOptions
from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse

from guardrail_langchain._chat_model import GuardedChatModel
from guardrail_langchain._runnable import options_for

__all__ = ["GuardrailMiddleware"]


class GuardrailMiddleware(AgentMiddleware):
    """Agent middleware that guards each model call.

    >>> from langchain.agents import create_agent
    >>> agent = create_agent(model, tools, middleware=[GuardrailMiddleware(Guard())])  # doctest: +SKIP

    A `block` policy raises `guardrail.Blocked` out of the agent; a `rewrite` policy makes the
    model's answer the guard's refusal (with no tool calls, so the agent stops there).
    Options are those of `guardrail.GuardOptions` (`stream_mode`, `every`, `unit`, `optimistic`, ...).
    """

    def __init__(self, guard: Guard, **options: Any) -> None:
        self.guard = guard
        self.options = options_for(guard, GuardOptions(**options))
        self.tools = []

    def _guarded(self, request: ModelRequest) -> ModelRequest:
        model = request.model
        if isinstance(model, GuardedChatModel) and model.guard is self.guard:
            return request
        guarded = GuardedChatModel(chat_model=model, guard=self.guard, options=self.options)
        return request.override(model=guarded)

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse:
        return handler(self._guarded(request))

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse:
        return await handler(self._guarded(request))
