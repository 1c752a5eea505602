"""LiteLLM's Generic Guardrail API, so a LiteLLM proxy can use this service as its guardrail.

The contract (https://docs.litellm.ai/docs/adding_provider/generic_guardrail_api, and the
request model `GenericGuardrailAPIRequest` in LiteLLM's
`litellm/types/proxy/guardrails/guardrail_hooks/generic_guardrail_api.py`): LiteLLM posts to
`{api_base}/beta/litellm_basic_guardrail_api`

    {"texts": [str], "images": [str]?, "tools": [...]?, "tool_calls": [...]?,
     "structured_messages": [OpenAI messages]?, "input_type": "request" | "response",
     "request_data": {...}, "litellm_call_id": str?, "litellm_trace_id": str?,
     "additional_provider_specific_params": {...}?}

and reads `{"action": "NONE" | "BLOCKED" | "GUARDRAIL_INTERVENED", "blocked_reason": str?,
"texts": [str]?}`: BLOCKED stops the call with the reason, GUARDRAIL_INTERVENED goes on with
`texts` in place of the originals, NONE goes on unchanged. Fields we don't use are ignored, so
later LiteLLM releases that add fields keep working.

How we read it:
- `input_type: "request"` is our input stage. With `structured_messages` (chat endpoints) the
  latest user message is checked, as `Guard.check_input` does; the system prompt and earlier
  turns are not judged again. Without them (completions, embeddings, ...) every text is checked
  as a user message of its own.
- `input_type: "response"` is our output stage: each text (one per choice) is checked as the
  assistant's answer to the latest user message of `structured_messages` (an empty prompt when
  there is none); the response's `tool_calls`, when sent, are checked as one more answer.
- Verdicts map to actions: any block -> BLOCKED (the reason names the policies, and says when
  the scorer failed and the policy failed closed); else any rewrite -> GUARDRAIL_INTERVENED with
  the judged texts replaced by the refusal; else NONE (flags included). A rewrite that can't be
  placed in `texts` blocks instead of passing the original.
- Content that can't be checked (images, non-text message parts) is BLOCKED with the reason,
  never passed unchecked. A malformed body is 400; a busy, loading or failing service answers
  429/503/504, which LiteLLM treats as a guardrail failure (it blocks by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from guardrail._exceptions import Blocked
from guardrail._policies import Stage
from guardrail._verdict import Verdict
from guardrail.serve._http import ApiError, json_object, read_json
from guardrail.serve._runtime import served_guard

__all__ = ["PATH", "litellm_guardrail", "litellm_plan", "litellm_response"]

PATH = "/beta/litellm_basic_guardrail_api"
_STAGES = {"request": Stage.INPUT, "response": Stage.OUTPUT}


def _strings(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"'{name}' must be a list of strings", param=name, code="invalid_body")
    return value


def _messages(body: dict[str, Any]) -> list[Any] | None:
    value = body.get("structured_messages")
    if value is None:
        return None
    if not isinstance(value, list):
        raise ApiError(400, "'structured_messages' must be a list of messages", param="structured_messages",
                       code="invalid_body")
    return value


def _has_user(messages: list[Any]) -> bool:
    return any(isinstance(m, dict) and m.get("role") == "user" for m in messages)


def litellm_plan(body: dict[str, Any]) -> tuple[Stage, list[tuple[Any, Stage]], list[int | None]]:
    """The checks a LiteLLM request asks for, and which index of `texts` each one judges
    (`None`: structured messages or tool calls, placed by `litellm_response`). Pure."""
    kind = body.get("input_type")
    if kind not in _STAGES:
        raise ApiError(400, f"'input_type' must be 'request' or 'response', got {kind!r}", param="input_type",
                       code="invalid_body")
    stage = _STAGES[kind]
    texts = _strings(body, "texts")
    messages = _messages(body)
    if stage is Stage.INPUT:
        if messages and _has_user(messages):
            return stage, [(messages, stage)], [None]
        return stage, [([{"role": "user", "content": t}], stage) for t in texts], list(range(len(texts)))
    history = [m for m in (messages or []) if not (isinstance(m, dict) and m.get("role") == "assistant")]
    checks: list[tuple[Any, Stage]] = [([*history, {"role": "assistant", "content": t}], stage) for t in texts]
    targets: list[int | None] = list(range(len(texts)))
    calls = body.get("tool_calls")
    if calls:
        checks.append(([*history, {"role": "assistant", "content": None, "tool_calls": calls}], stage))
        targets.append(None)
    return stage, checks, targets


def _latest_user_parts(messages: list[Any]) -> list[str]:
    """The latest user message as LiteLLM flattens it into `texts`: a string content is one
    text, a list content one text per text part."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return [content]
            return [p["text"] for p in content or [] if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return []


def _place(texts: list[str], parts: list[str], refusal: str) -> list[str] | None:
    """`texts` with the last run equal to `parts` replaced by the refusal; None if not found."""
    n = len(parts)
    for start in range(len(texts) - n, -1, -1):
        if n and texts[start:start + n] == parts:
            return [*texts[:start], refusal, *([""] * (n - 1)), *texts[start + n:]]
    return None


def _blocked(reason: str) -> dict[str, Any]:
    return {"action": "BLOCKED", "blocked_reason": reason}


def litellm_response(body: dict[str, Any], verdicts: Sequence[Verdict], targets: Sequence[int | None]) -> dict[str, Any]:
    """The action for LiteLLM from the verdicts of `litellm_plan`'s checks. Pure."""
    blocking = [v for v in verdicts if v.blocked]
    if blocking:
        return _blocked("; ".join(str(Blocked(v)) for v in blocking))
    texts = list(_strings(body, "texts"))
    changed = False
    for verdict, target in zip(verdicts, targets):
        if not verdict.rewritten:
            continue
        if target is not None:
            texts[target] = verdict.refusal
        else:
            placed = None
            if verdict.stage is Stage.INPUT:
                placed = _place(texts, _latest_user_parts(_messages(body) or []), verdict.refusal)
            if placed is None:  # e.g. tool calls, or texts that don't hold the message as sent
                return _blocked(f"{verdict.stage.value} must be rewritten by policy "
                                f"{', '.join(d.policy for d in verdict.blocking)}, and the rewrite can't be "
                                "placed in texts")
            texts = placed
        changed = True
    return {"action": "GUARDRAIL_INTERVENED", "texts": texts} if changed else {"action": "NONE"}


def _unscorable(exc: ApiError) -> bool:
    return exc.status == 400 and exc.code == "invalid_messages"


async def litellm_guardrail(request: Request) -> JSONResponse:
    body = json_object(await read_json(request))
    stage, checks, targets = litellm_plan(body)
    served = served_guard(request)
    if body.get("images"):
        served.metrics.checks.labels(PATH, stage.value, "unscorable").inc()
        return JSONResponse(_blocked("guardrail scores text only and refuses images rather than pass them unchecked"))
    if not checks:
        return JSONResponse({"action": "NONE"})
    try:
        verdicts = await served.check_many(checks, endpoint=PATH)
    except ApiError as exc:
        if not _unscorable(exc):
            raise
        served.metrics.checks.labels(PATH, stage.value, "unscorable").inc()
        return JSONResponse(_blocked(f"guardrail can't check this content, so it is not let through: {exc.message}"))
    return JSONResponse(litellm_response(body, verdicts, targets))
