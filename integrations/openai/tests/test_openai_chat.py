"""Non-streaming guarded calls through the real openai client over HTTP (sync and async)."""

from __future__ import annotations

import inspect

import pytest
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from guardrail import Blocked, ConfigError, Guard, MessageError, ScorerError, builtin_policy
from guardrail.testing import FunctionScorer, KeywordScorer
from guardrail_openai import AsyncGuardedOpenAI, GuardedOpenAI
from guardrail_openai.testing import FakeOpenAI

SAFE = "Bread needs flour, water, salt and yeast. Knead it well, let it rise, then bake it hot."
USER = [{"role": "user", "content": "How do I bake bread?"}]
BAD_USER = [{"role": "user", "content": "How do I kill my neighbour?"}]
OPTIONS = dict(stream_mode="stream_first", every=7, unit="chunks", optimistic=True, on_block="refuse")


def test_allowed_chat_completion_is_the_real_object_unchanged(server, make_guard):
    client = GuardedOpenAI(server.client(), make_guard())
    completion = client.chat.completions.create(model="m", messages=USER)
    assert type(completion) is ChatCompletion
    assert completion.choices[0].message.content == SAFE
    assert completion.choices[0].finish_reason == "stop"


def test_blocked_input_raises_and_never_calls_openai(server, make_guard):
    client = GuardedOpenAI(server.client(), make_guard())
    with pytest.raises(Blocked) as caught:
        client.chat.completions.create(model="m", messages=BAD_USER)
    assert caught.value.verdict.stage.value == "input"
    assert server.requests == []


def test_blocked_output_raises(unsafe_server, make_guard):
    client = GuardedOpenAI(unsafe_server.client(), make_guard())
    with pytest.raises(Blocked) as caught:
        client.chat.completions.create(model="m", messages=USER)
    assert caught.value.verdict.stage.value == "output"


@pytest.mark.parametrize(("action", "on_block"), [("rewrite", "raise"), ("block", "refuse")])
def test_refused_output_is_a_genuine_content_filter_completion(unsafe_server, make_guard, action, on_block):
    client = GuardedOpenAI(unsafe_server.client(), make_guard(action), on_block=on_block)
    completion = client.chat.completions.create(model="m", messages=USER)
    assert type(completion) is ChatCompletion
    assert completion.choices[0].message.content == client.guard.refusal
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.id == "chatcmpl-fake"  # the real completion, rewritten


def test_refused_input_returns_a_completion_without_calling_openai(server, make_guard):
    client = GuardedOpenAI(server.client(), make_guard("rewrite"))
    completion = client.chat.completions.create(model="gpt-x", messages=BAD_USER)
    assert type(completion) is ChatCompletion
    assert completion.model == "gpt-x" and completion.choices[0].finish_reason == "content_filter"
    assert server.requests == []


def test_flag_passes_the_content_and_reports_the_verdict(unsafe_server, make_guard):
    seen = []
    client = GuardedOpenAI(unsafe_server.client(), make_guard("flag"), on_verdict=seen.append)
    completion = client.chat.completions.create(model="m", messages=USER)
    assert completion.choices[0].message.content.startswith("Bread needs flour and water. Then you kill")
    assert [v.stage.value for v in seen] == ["input", "output"]
    assert seen[-1].flags and seen[-1].allowed


def test_tool_call_arguments_are_checked(make_guard):
    server = FakeOpenAI("Sure.", tool_call={"name": "act", "arguments": '{"do": "kill him"}'})
    client = GuardedOpenAI(server.client(), make_guard("rewrite"))
    completion = client.chat.completions.create(model="m", messages=USER)
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].finish_reason == "content_filter"


def test_guard_options_never_reach_the_request_body(server, make_guard):
    client = GuardedOpenAI(server.client(), make_guard(), **OPTIONS)
    client.chat.completions.create(model="m", messages=USER, temperature=0.2)
    list(client.chat.completions.create(model="m", messages=USER, stream=True))
    client.responses.create(model="m", input="How do I bake bread?")
    bodies = [r["body"] for r in server.requests]
    assert len(bodies) == 3
    for body in bodies:
        assert not set(body) & {*OPTIONS, "guard", "on_verdict", "mode", "refusal"}
    assert bodies[0] == {"model": "m", "messages": USER, "temperature": 0.2}


def test_signatures_and_allowed_attributes_forward(server, make_guard):
    raw = server.client()
    client = GuardedOpenAI(raw, make_guard())
    assert inspect.signature(client.chat.completions.create) == inspect.signature(raw.chat.completions.create)
    assert inspect.signature(client.responses.create) == inspect.signature(raw.responses.create)
    assert client.chat.completions.create.__doc__ == raw.chat.completions.create.__doc__
    assert client.api_key == "fake" and str(client.base_url) == "http://fake/v1/"
    assert client.models.list == raw.models.list
    assert client.chat.completions.delete == raw.chat.completions.delete
    with pytest.raises(AttributeError, match="not guarded"):  # stored model text: see test_openai_access
        client.chat.completions.retrieve  # noqa: B018
    with pytest.raises(AttributeError, match="not guarded"):
        client.chat.completions.stream  # noqa: B018 - the unguarded helper must not be reachable
    with pytest.raises(AttributeError, match="not guarded"):
        client.responses.with_raw_response  # noqa: B018


def test_with_options_stays_guarded(server, make_guard):
    client = GuardedOpenAI(server.client(), make_guard(), every=9).with_options(timeout=5)
    assert isinstance(client, GuardedOpenAI) and client.options.every == 9
    with pytest.raises(Blocked):
        client.chat.completions.create(model="m", messages=BAD_USER)


def test_a_failing_scorer_lets_nothing_through(server):
    def broken(request):
        raise RuntimeError("model crashed")

    client = GuardedOpenAI(server.client(), Guard(["dangerous"], scorer=FunctionScorer(broken)))
    with pytest.raises(Blocked, match="failed closed"):  # the default fail mode
        client.chat.completions.create(model="m", messages=USER)
    assert server.requests == []
    out_only = Guard([builtin_policy("dangerous", stages=["output"])], scorer=FunctionScorer(broken))
    with pytest.raises(Blocked, match="failed closed"):  # the default fail mode
        GuardedOpenAI(server.client(), out_only).responses.create(model="m", input="hi")
    assert len(server.requests) == 1  # called, but its output never came back
    raising = Guard([builtin_policy("dangerous", on_error="raise")], scorer=FunctionScorer(broken))
    with pytest.raises(ScorerError, match="model crashed"):
        GuardedOpenAI(server.client(), raising).chat.completions.create(model="m", messages=USER)


def test_content_that_cannot_be_checked_is_refused_with_a_typed_error(server, make_guard):
    client = GuardedOpenAI(server.client(), make_guard())
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]
    with pytest.raises(MessageError):
        client.chat.completions.create(model="m", messages=image)
    with pytest.raises(ConfigError):
        client.chat.completions.create(model="m", messages=USER, stream=True, n=2)
    assert server.requests == []


def test_bad_construction_is_a_config_error(server, make_guard):
    with pytest.raises(ConfigError, match="AsyncGuardedOpenAI"):
        GuardedOpenAI(server.async_client(), make_guard())
    with pytest.raises(ConfigError):
        AsyncGuardedOpenAI(server.client(), make_guard())
    with pytest.raises(ConfigError):
        GuardedOpenAI(server.client(), "not a guard")
    with pytest.raises(ConfigError):
        GuardedOpenAI(server.client(), make_guard(), stream_mode="later")
    with pytest.raises(ConfigError):
        GuardedOpenAI(server.client(), make_guard(), every=0)


def test_responses_input_list_and_output_refusal(unsafe_server, make_guard):
    client = GuardedOpenAI(unsafe_server.client(), make_guard("rewrite"))
    items = [
        {"role": "developer", "content": "Be brief."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Bake bread?"}]},
    ]
    response = client.responses.create(model="m", input=items, instructions="You kill nothing.")
    assert type(response) is Response
    assert response.status == "incomplete" and response.incomplete_details.reason == "content_filter"
    assert response.output_text == client.guard.refusal
    assert unsafe_server.requests[0]["body"]["input"] == items


def test_responses_blocked_input_in_a_list(server, make_guard):
    client = GuardedOpenAI(server.client(), make_guard())
    with pytest.raises(Blocked):
        client.responses.create(model="m", input=[{"role": "user", "content": "kill it"}])
    assert server.requests == []


def test_chat_parse_is_guarded(unsafe_server, make_guard):
    client = GuardedOpenAI(unsafe_server.client(), make_guard())
    with pytest.raises(Blocked):
        client.chat.completions.parse(model="m", messages=USER)


async def test_async_chat_and_responses(server, unsafe_server, make_guard):
    client = AsyncGuardedOpenAI(server.async_client(), make_guard())
    assert inspect.iscoroutinefunction(client.chat.completions.create)
    completion = await client.chat.completions.create(model="m", messages=USER)
    assert type(completion) is ChatCompletion and completion.choices[0].message.content == SAFE
    response = await client.responses.create(model="m", input="How do I bake bread?")
    assert type(response) is Response and response.output_text == SAFE
    with pytest.raises(Blocked):
        await client.responses.create(model="m", input="kill")
    refusing = AsyncGuardedOpenAI(unsafe_server.async_client(), make_guard("rewrite"))
    refused = await refusing.chat.completions.create(model="m", messages=USER)
    assert refused.choices[0].finish_reason == "content_filter"
    refused_response = await refusing.responses.create(model="m", input="Bake bread?")
    assert refused_response.incomplete_details.reason == "content_filter"


async def test_async_failing_scorer_lets_nothing_through(unsafe_server):
    scorer = KeywordScorer({"kill": 1.5})  # not a probability: the scorer is broken
    client = AsyncGuardedOpenAI(unsafe_server.async_client(), Guard(["dangerous"], scorer=scorer))
    with pytest.raises(Blocked, match="failed closed"):  # the default fail mode
        await client.chat.completions.create(model="m", messages=USER)
