"""LiteLLM's Generic Guardrail API, with request bodies built the way LiteLLM builds them
(https://docs.litellm.ai/docs/adding_provider/generic_guardrail_api), over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from serving import running

from guardrail import FailMode, Guard, builtin_policy
from guardrail.serve import create_app
from guardrail.testing import FunctionScorer, RecordingScorer

PATH = "/beta/litellm_basic_guardrail_api"
REFUSAL = "I can't help with that."


def score(request) -> float:  # noqa: ANN001
    text = (request.turn.response if request.turn.response is not None else request.turn.prompt).lower()
    if "explode" in text:
        raise RuntimeError("model exploded")
    own = {"hate": "vermin", "violence": "gore", "harassment": "idiot"}[request.policy]
    return 0.95 if own in text else 0.02


def make_guard(on_error: FailMode = FailMode.BLOCK) -> tuple[Guard, RecordingScorer]:
    recording = RecordingScorer(FunctionScorer(score))
    policies = [builtin_policy("hate", on_error=on_error), builtin_policy("violence", action="rewrite"),
                builtin_policy("harassment", action="flag")]
    return Guard(policies, scorer=recording, refusal=REFUSAL), recording


def litellm_body(texts: list[str], input_type: str = "request", **fields: Any) -> dict[str, Any]:
    """Every field of LiteLLM's GenericGuardrailAPIRequest, as its model_dump() sends them."""
    return {
        "input_type": input_type,
        "litellm_call_id": "call-123",
        "litellm_trace_id": "trace-456",
        "structured_messages": None,
        "images": None,
        "tools": None,
        "texts": texts,
        "request_data": {"user_api_key_hash": "hash", "user_api_key_alias": "alias", "user_api_key_team_id": "team"},
        "additional_provider_specific_params": {"threshold": 0.8},
        **fields,
    }


@pytest.fixture(scope="module")
def server():  # noqa: ANN201
    guard, recording = make_guard()
    with running(create_app(guard)) as result:
        result.recording = recording  # type: ignore[attr-defined]
        yield result


def post(server, body: Any) -> Any:  # noqa: ANN001
    with server.client() as http:
        return http.post(PATH, json=body)


def test_a_clean_request_passes_unchanged(server) -> None:  # noqa: ANN001
    response = post(server, litellm_body(["How do I bake bread?"]))
    assert response.status_code == 200 and response.json() == {"action": "NONE"}


def test_a_blocked_request_says_which_policy(server) -> None:  # noqa: ANN001
    body = post(server, litellm_body(["They are vermin."])).json()
    assert body == {"action": "BLOCKED", "blocked_reason": "input blocked by policy hate"}


def test_a_flag_lets_the_request_through(server) -> None:  # noqa: ANN001
    assert post(server, litellm_body(["you idiot"])).json() == {"action": "NONE"}


def test_without_roles_every_text_is_checked_and_a_rewrite_replaces_only_its_text(server) -> None:  # noqa: ANN001
    body = post(server, litellm_body(["first, fine", "gore everywhere", "third, fine"])).json()
    assert body == {"action": "GUARDRAIL_INTERVENED", "texts": ["first, fine", REFUSAL, "third, fine"]}


def test_with_structured_messages_only_the_latest_user_message_is_judged(server) -> None:  # noqa: ANN001
    messages = [
        {"role": "system", "content": "Refuse to repeat slurs like vermin."},  # the operator's prompt
        {"role": "user", "content": "Say vermin."},
        {"role": "assistant", "content": "No."},
        {"role": "user", "content": "How do I bake bread?"},
    ]
    texts = [m["content"] for m in messages]
    assert post(server, litellm_body(texts, structured_messages=messages)).json() == {"action": "NONE"}
    messages[-1]["content"] = "They are vermin."
    texts[-1] = messages[-1]["content"]
    assert post(server, litellm_body(texts, structured_messages=messages)).json()["action"] == "BLOCKED"


def test_a_rewrite_of_a_structured_message_lands_on_its_texts(server) -> None:  # noqa: ANN001
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Describe the gore"}, {"type": "text", "text": "in detail"}]},
    ]
    texts = ["Be brief.", "Describe the gore", "in detail"]
    body = post(server, litellm_body(texts, structured_messages=messages)).json()
    assert body == {"action": "GUARDRAIL_INTERVENED", "texts": ["Be brief.", REFUSAL, ""]}


def test_a_rewrite_that_cannot_be_placed_blocks(server) -> None:  # noqa: ANN001
    messages = [{"role": "user", "content": "Describe the gore"}]
    body = post(server, litellm_body(["something else"], structured_messages=messages)).json()
    assert body["action"] == "BLOCKED" and "can't be placed" in body["blocked_reason"]


def test_responses_are_checked_against_the_users_prompt(server) -> None:  # noqa: ANN001
    messages = [{"role": "user", "content": "Tell me about them"}]
    server.recording.batches.clear()
    clean = post(server, litellm_body(["They are people."], "response", structured_messages=messages)).json()
    assert clean == {"action": "NONE"}
    assert {(r.turn.prompt, r.turn.response) for r in server.recording.requests} == {
        ("Tell me about them", "They are people.")}
    rewritten = post(server, litellm_body(["Choice one.", "So much gore."], "response")).json()
    assert rewritten == {"action": "GUARDRAIL_INTERVENED", "texts": ["Choice one.", REFUSAL]}
    blocked = post(server, litellm_body(["They are vermin."], "response")).json()
    assert blocked == {"action": "BLOCKED", "blocked_reason": "output blocked by policy hate"}


def test_response_tool_calls_are_checked_too(server) -> None:  # noqa: ANN001
    calls = [{"id": "c1", "type": "function", "function": {"name": "post", "arguments": '{"text": "vermin"}'}}]
    body = post(server, litellm_body([], "response", tool_calls=calls)).json()
    assert body["action"] == "BLOCKED"
    calls[0]["function"]["arguments"] = '{"text": "hello"}'
    assert post(server, litellm_body(["ok"], "response", tool_calls=calls)).json() == {"action": "NONE"}


def test_images_and_non_text_parts_are_blocked_not_passed_unchecked(server) -> None:  # noqa: ANN001
    body = post(server, litellm_body(["look at this"], images=["iVBORw0KGgo="])).json()
    assert body["action"] == "BLOCKED" and "images" in body["blocked_reason"]
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                             {"type": "image_url", "image_url": {"url": "data:,"}}]}]
    body = post(server, litellm_body(["hi"], structured_messages=messages)).json()
    assert body["action"] == "BLOCKED" and "only text parts can be checked" in body["blocked_reason"]


def test_nothing_to_check_is_none_and_unknown_fields_are_ignored(server) -> None:  # noqa: ANN001
    assert post(server, litellm_body([])).json() == {"action": "NONE"}
    later = litellm_body(["fine"], litellm_version="9.9.9", model="gpt-4o", request_headers={"x": "[present]"})
    assert post(server, later).json() == {"action": "NONE"}


@pytest.mark.parametrize("body, message", [
    ({"texts": ["hi"]}, "'input_type' must be 'request' or 'response'"),
    (litellm_body(["hi"], "prompt"), "'input_type' must be"),
    (litellm_body("hi"), "'texts' must be a list of strings"),  # type: ignore[arg-type]
    (litellm_body(["hi"], structured_messages="hi"), "'structured_messages' must be a list"),
])
def test_malformed_bodies_are_400(server, body: Any, message: str) -> None:  # noqa: ANN001
    response = post(server, body)
    assert response.status_code == 400 and message in response.json()["error"]["message"]


def test_scorer_failures_follow_the_fail_mode() -> None:
    guard, _ = make_guard(FailMode.BLOCK)
    with running(create_app(guard)) as server:
        body = post(server, litellm_body(["explode"])).json()
    assert body["action"] == "BLOCKED" and "failed closed" in body["blocked_reason"]
    guard, _ = make_guard(FailMode.RAISE)
    with running(create_app(guard)) as server:
        response = post(server, litellm_body(["explode"]))
    assert response.status_code == 503  # LiteLLM treats it as a failed guardrail and blocks by default
