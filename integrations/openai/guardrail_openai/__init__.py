"""guardrail-openai: drop-in guarded OpenAI clients.

>>> from openai import OpenAI
>>> from guardrail import Guard
>>> from guardrail_openai import GuardedOpenAI
>>> client = GuardedOpenAI(OpenAI(), Guard(["dangerous", "hate"]))   # doctest: +SKIP
>>> client.chat.completions.create(model="gpt-4o-mini", messages=[...])  # doctest: +SKIP

Guarded: `chat.completions.create` / `.parse` and `responses.create` / `.parse`, streaming
included. A request whose roles the guard can't read for sure, or with no user text, raises
`guardrail.MessageError` before it is sent. Only attributes that can't reach a model
(`embeddings`, `files`, `models`, settings, ...) forward to the wrapped client; the rest raise
`AttributeError` and stay reachable through `client.unguarded`, to bypass the guard on purpose.

This package only converts: OpenAI requests, results and stream chunks to and from what the
guard reads (`ChatCall`, `ResponsesCall`); when to check and what a verdict means is the
guardrail kernel's (`guardrail.invoke`, `guardrail.open_stream`, `guardrail.GuardOptions`).
"""

from guardrail import AsyncGuardedStream, GuardedStream, GuardOptions, OnBlock, Reasoning

from guardrail_openai._client import AsyncGuardedOpenAI, GuardedOpenAI

__all__ = [
    "AsyncGuardedOpenAI",
    "AsyncGuardedStream",
    "GuardOptions",
    "GuardedOpenAI",
    "GuardedStream",
    "OnBlock",
    "Reasoning",
]
