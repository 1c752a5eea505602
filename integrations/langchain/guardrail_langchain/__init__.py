"""guardrail for LangChain: guard a Runnable, wrap a chat model, or add agent middleware.

>>> from guardrail import Guard
>>> from guardrail_langchain import GuardedChatModel, guard_runnable
>>> guarded_chain = guard_runnable(prompt | model | parser, Guard())         # doctest: +SKIP
>>> guarded_model = GuardedChatModel(chat_model=model, guard=Guard())          # doctest: +SKIP

`GuardrailMiddleware` (LangChain 1.x agents) loads `langchain` only when first used.

This package only converts: LangChain inputs, outputs and stream chunks to and from what the
guard reads (`_convert`, `_codec`); when to check and what a verdict means is the guardrail
kernel's (`guardrail.invoke`, `guardrail.open_stream`, `guardrail.GuardOptions`).
"""

from guardrail import GuardOptions

from guardrail_langchain._chat_model import GuardedChatModel
from guardrail_langchain._convert import input_messages, output_text
from guardrail_langchain._events import langchain_events
from guardrail_langchain._runnable import GuardedRunnable, guard_runnable

__all__ = [
    "GuardOptions",
    "GuardedChatModel",
    "GuardedRunnable",
    "GuardrailMiddleware",
    "guard_runnable",
    "input_messages",
    "langchain_events",
    "output_text",
]

__version__ = "0.1.0"


def __getattr__(name: str):  # noqa: ANN202 - lazy optional import
    if name == "GuardrailMiddleware":
        from guardrail_langchain._middleware import GuardrailMiddleware

        return GuardrailMiddleware
    raise AttributeError(f"module 'guardrail_langchain' has no attribute {name!r}")
