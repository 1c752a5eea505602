"""guardrail: a guardrail layer for LLM applications, built on ShieldGemma-style scoring.

>>> from guardrail import Guard
>>> guard = Guard(["dangerous", "hate"])            # the embedded default model loads lazily
>>> guard.check_input("How do I bake bread?").allowed   # doctest: +SKIP
True

Importing this package loads neither torch, transformers, langchain nor openai.
"""

from guardrail._audit import JsonlAudit, SqliteAudit, audit_record, content_hash
from guardrail._batching import BatchingScorer
from guardrail._config import Config, ModelConfig, load_config
from guardrail._exceptions import Blocked, ConfigError, GuardrailError, MessageError, ScorerError
from guardrail._guard import Guard
from guardrail._drivers import ainvoke, aopen_stream, invoke, open_stream
from guardrail._kernel import Call, GuardOptions, OnBlock, Reasoning, react
from guardrail._messages import Message, Turn, prompt_text, select_turn, tool_call_text
from guardrail._normalize import normalize_for_scoring
from guardrail._policies import (
    BUILTIN_POLICIES,
    Action,
    FailMode,
    Policy,
    Stage,
    builtin_policy,
    format_guideline,
)
from guardrail._prompts import chat_template, render_chat, render_prompt, split_prompt
from guardrail._relay import AsyncGuardedStream, ChunkReader, GuardedStream, Relay
from guardrail._scoring import AsyncScorer, Scorer, ScoreRequest
from guardrail._streaming import StreamMode, StreamModerator, StreamStep, validate_stream_options
from guardrail._tracing import TracedScorer, otel_observer
from guardrail._windows import Windows
from guardrail._verdict import DEFAULT_REFUSAL, Decision, Outcome, Verdict

__all__ = [
    "Action",
    "AsyncGuardedStream",
    "AsyncScorer",
    "BUILTIN_POLICIES",
    "BatchingScorer",
    "Blocked",
    "Call",
    "ChunkReader",
    "Config",
    "ConfigError",
    "DEFAULT_REFUSAL",
    "Decision",
    "FailMode",
    "Guard",
    "GuardOptions",
    "GuardedStream",
    "GuardrailError",
    "JsonlAudit",
    "Message",
    "MessageError",
    "ModelConfig",
    "OnBlock",
    "Outcome",
    "Policy",
    "Reasoning",
    "Relay",
    "ScoreRequest",
    "Scorer",
    "ScorerError",
    "SqliteAudit",
    "Stage",
    "StreamMode",
    "StreamModerator",
    "StreamStep",
    "TracedScorer",
    "Turn",
    "Verdict",
    "Windows",
    "ainvoke",
    "aopen_stream",
    "audit_record",
    "builtin_policy",
    "chat_template",
    "content_hash",
    "format_guideline",
    "invoke",
    "load_config",
    "normalize_for_scoring",
    "open_stream",
    "otel_observer",
    "prompt_text",
    "react",
    "render_chat",
    "render_prompt",
    "select_turn",
    "split_prompt",
    "tool_call_text",
    "validate_stream_options",
]

__version__ = "0.1.0"


def __getattr__(name: str):  # noqa: ANN202 - lazy heavy imports
    if name == "TransformersScorer":
        from guardrail._transformers import TransformersScorer

        return TransformersScorer
    if name == "RemoteScorer":
        from guardrail._remote import RemoteScorer

        return RemoteScorer
    if name == "EmbeddedScorer":
        from guardrail._embedded import EmbeddedScorer

        return EmbeddedScorer
    raise AttributeError(f"module 'guardrail' has no attribute {name!r}")
