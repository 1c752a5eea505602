"""guardrail-openai: drop-in guarded OpenAI clients.

>>> from openai import OpenAI
>>> from guardrail import Guard
>>> from guardrail_openai import GuardedOpenAI
>>> client = GuardedOpenAI(OpenAI(), Guard(["dangerous", "hate"]))   # doctest: +SKIP
>>> client.chat.completions.create(model="gpt-4o-mini", messages=[...])  # doctest: +SKIP

Guarded: `chat.completions.create` / `.parse` and `responses.create` / `.parse`, streaming
included. Everything else forwards to the wrapped client unguarded.
"""

from guardrail_openai._client import AsyncGuardedOpenAI, GuardedOpenAI
from guardrail_openai._options import GuardOptions, OnBlock
from guardrail_openai._streams import AsyncGuardedStream, GuardedStream

__all__ = ["AsyncGuardedOpenAI", "AsyncGuardedStream", "GuardOptions", "GuardedOpenAI", "GuardedStream", "OnBlock"]
