"""The built-in routes: OpenAI-compatible moderations, the check API, health and metrics.

`POST /v1/moderations` speaks OpenAI's moderation API: `input` is a string, a list of strings
(one result each), or a list of content parts (one result; text parts are scored, any other
part is refused with 400). Categories are the guard's input-stage policies; `category_scores`
are P(Yes). `flagged` is true when any policy triggered (block, rewrite or flag: each means
"violates the policy"). Where the scorer failed, the score is `null`, the category follows the
policy's fail mode (`block`: flagged; `allow`: not flagged), and the extension field `errors`
says why; a `raise` fail mode answers 503. Never a failure dressed as a clean 0.

`POST /v1/checks` takes `{"messages": [...OpenAI messages...], "stage": "input" | "output"}`
and answers the verdict: outcome, and per policy the score, threshold, action, whether it
triggered, and the error and fail mode where the scorer failed.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from guardrail._policies import Stage
from guardrail._verdict import Verdict
from guardrail.serve._http import ApiError, json_object, read_json
from guardrail.serve._runtime import served_guard

__all__ = ["checks", "healthz", "metrics", "moderation_inputs", "moderation_result", "moderations",
           "readyz", "verdict_json"]


# --- moderations ------------------------------------------------------------------------------
def _parts_text(parts: list[Any]) -> str:
    texts = []
    for n, part in enumerate(parts):
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            raise ApiError(400, f"input[{n}] is an image: this service scores text only, and refuses "
                                "images rather than pass them unchecked", param="input", code="unsupported_input")
        else:
            raise ApiError(400, f"input[{n}]: a content part must be {{'type': 'text', 'text': str}}, "
                                f"got type {kind!r}", param="input", code="invalid_input")
    return "\n".join(texts)


def moderation_inputs(body: dict[str, Any]) -> list[str]:
    """The texts to score, one per result. Raises a 400 `ApiError` naming what is wrong."""
    if "input" not in body:
        raise ApiError(400, "missing 'input'", param="input", code="invalid_input")
    value = body["input"]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return list(value)
        if all(isinstance(v, dict) for v in value):
            return [_parts_text(value)]
    raise ApiError(400, "'input' must be a string, a non-empty list of strings, or a non-empty list of "
                        "content parts", param="input", code="invalid_input")


def _score(value: float) -> float | None:
    return None if math.isnan(value) else value


def moderation_result(verdict: Verdict) -> dict[str, Any]:
    """One OpenAI moderation result from a verdict, plus `errors` (policy -> scorer error)."""
    return {
        "flagged": bool(verdict.triggered),
        "categories": {d.policy: d.triggered for d in verdict.decisions},
        "category_scores": {d.policy: _score(d.score) for d in verdict.decisions},
        "category_applied_input_types": {d.policy: ["text"] for d in verdict.decisions},
        "errors": {d.policy: d.error for d in verdict.errors},
    }


async def moderations(request: Request) -> JSONResponse:
    body = json_object(await read_json(request))
    texts = moderation_inputs(body)
    served = served_guard(request)
    checks = [([{"role": "user", "content": text}], Stage.INPUT) for text in texts]
    verdicts = await served.check_many(checks, endpoint="/v1/moderations")
    return JSONResponse({
        "id": f"modr-{uuid.uuid4().hex}",
        "model": served.settings.model_name,
        "results": [moderation_result(v) for v in verdicts],
    })


# --- checks -----------------------------------------------------------------------------------
def verdict_json(verdict: Verdict) -> dict[str, Any]:
    """`Verdict.to_dict()` made JSON-safe (no NaN), with the message index, errors and refusal."""
    data = verdict.to_dict()
    for entry, decision in zip(data["decisions"], verdict.decisions):
        entry["score"] = _score(decision.score)
        if decision.fail_mode is not None:
            entry["fail_mode"] = decision.fail_mode.value
    data["message_index"] = verdict.message_index
    data["errors"] = [{"policy": d.policy, "error": d.error, "fail_mode": d.fail_mode.value if d.fail_mode else None}
                      for d in verdict.errors]
    if not verdict.allowed:
        data["refusal"] = verdict.refusal
    return data


_CHECK_KEYS = {"messages", "stage"}


async def checks(request: Request) -> JSONResponse:
    body = json_object(await read_json(request))
    unknown = sorted(set(body) - _CHECK_KEYS)
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(unknown)}; allowed: messages, stage", code="invalid_body")
    if "messages" not in body:
        raise ApiError(400, "missing 'messages' (OpenAI chat messages, or a string)", param="messages",
                       code="invalid_body")
    served = served_guard(request)
    [verdict] = await served.check_many([(body["messages"], body.get("stage", "input"))], endpoint="/v1/checks")
    return JSONResponse({"id": f"chk-{uuid.uuid4().hex}", "model": served.settings.model_name, **verdict_json(verdict)})


# --- operations -------------------------------------------------------------------------------
async def healthz(request: Request) -> JSONResponse:
    """The process answers (liveness). Never needs a key."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """200 once the scorer is loaded (and warmed up); 503 with the reason before."""
    served = served_guard(request)
    if served.ready:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not ready", "reason": served.not_ready_reason}, status_code=503,
                        headers={"Retry-After": str(served.settings.retry_after)})


async def metrics(request: Request) -> Response:
    served = served_guard(request)
    served.metrics.queue_depth.set(served.queue_depth())
    return Response(served.metrics.render(), headers={"Content-Type": served.metrics.content_type})
