"""The guarding proxy of `guardrail serve`: the real `openai` client, over loopback HTTP, against
the service, which forwards to a fake OpenAI server (also real HTTP) and counts its hits."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import pytest
from guardrail_openai.testing import FakeOpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response
from prometheus_client.parser import text_string_to_metric_families
from serving import running

from guardrail import ConfigError, Guard, builtin_policy
from guardrail._config import load_serve_table
from guardrail.serve import ServeSettings, create_app
from guardrail.testing import KeywordScorer

REFUSAL = "I can't help with that."
BENIGN = [{"role": "user", "content": "How do I bake bread?"}]
HARMFUL = [{"role": "user", "content": "How do I kill my neighbour?"}]
HARMFUL_ANSWER = "Knead the dough well, then let it rest. Then kill the neighbour quietly. Bake it."


@contextmanager
def proxy(reply: str, *, fake_kwargs: dict[str, Any] | None = None, suffix: str = "",
          **settings: Any) -> Iterator[tuple[openai.OpenAI, FakeOpenAI]]:
    """The real openai client pointed at guardrail serve, which forwards to a FakeOpenAI."""
    fake = FakeOpenAI(reply, **(fake_kwargs or {}))
    guard = Guard([builtin_policy("dangerous")], scorer=KeywordScorer({"kill": 0.99}), refusal=REFUSAL)
    with fake.serve() as base_url:
        app = create_app(guard, settings=ServeSettings(upstream=base_url + suffix, upstream_api_key="up-key",
                                                       api_keys=("proxy-key",), **settings))
        with running(app) as server:
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="proxy-key", max_retries=0)
            try:
                yield client, fake
            finally:
                client.close()


def chat_text(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_a_harmful_input_is_refused_without_calling_the_upstream() -> None:
    with proxy("Knead it.") as (client, fake):
        completion = client.chat.completions.create(model="m", messages=HARMFUL)  # type: ignore[arg-type]
        assert isinstance(completion, ChatCompletion)
        assert completion.choices[0].finish_reason == "content_filter"
        assert completion.choices[0].message.content == REFUSAL
        chunks = list(client.chat.completions.create(model="m", messages=HARMFUL, stream=True))  # type: ignore[arg-type]
        assert chat_text(chunks) == REFUSAL and chunks[-1].choices[0].finish_reason == "content_filter"
        assert fake.requests == []


def test_benign_traffic_passes_through_with_genuine_types() -> None:
    with proxy("Knead it, then bake.") as (client, fake):
        completion = client.chat.completions.create(model="m", messages=BENIGN)  # type: ignore[arg-type]
        assert isinstance(completion, ChatCompletion)
        assert completion.choices[0].message.content == "Knead it, then bake."
        assert completion.choices[0].finish_reason == "stop" and completion.usage is not None
        assert len(fake.requests) == 1 and fake.requests[0]["body"]["messages"] == BENIGN
        assert fake.requests[0]["authorization"] == "Bearer up-key", "the upstream key, never the client's"
        chunks = list(client.chat.completions.create(model="m", messages=BENIGN, stream=True))  # type: ignore[arg-type]
        assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
        assert chat_text(chunks) == "Knead it, then bake." and chunks[-1].choices[0].finish_reason == "stop"
        assert len(fake.requests) == 2


@pytest.mark.parametrize("mode", ["hold", "stream_first"])
def test_a_harmful_streamed_answer_is_moderated(mode: str) -> None:
    with proxy(HARMFUL_ANSWER, stream_mode=mode, every=16) as (client, fake):
        chunks = list(client.chat.completions.create(model="m", messages=BENIGN, stream=True))  # type: ignore[arg-type]
        text = chat_text(chunks)
        assert chunks[-1].choices[0].finish_reason == "content_filter"
        assert text.endswith(REFUSAL) and text.startswith("Knead")
        if mode == "hold":
            assert "kill" not in text
        assert len(fake.requests) == 1


def test_a_harmful_whole_answer_is_refused_as_content_filter_and_counted() -> None:
    with proxy(HARMFUL_ANSWER) as (client, fake):
        completion = client.chat.completions.create(model="m", messages=BENIGN)  # type: ignore[arg-type]
        assert completion.choices[0].finish_reason == "content_filter"
        assert completion.choices[0].message.content == REFUSAL and len(fake.requests) == 1
        root = str(client.base_url).removesuffix("/").removesuffix("/v1")
        metrics = httpx.get(f"{root}/metrics", headers={"Authorization": "Bearer proxy-key"}).text
        families = {f.name: f for f in text_string_to_metric_families(metrics)}
        checks = {(s.labels["endpoint"], s.labels["stage"], s.labels["outcome"]): s.value
                  for s in families["guardrail_checks"].samples if s.name.endswith("_total")}
        assert checks[("/v1/chat/completions", "input", "allow")] == 1
        assert checks[("/v1/chat/completions", "output", "block")] == 1


def test_responses_benign_and_harmful() -> None:
    with proxy("Knead it.") as (client, fake):
        response = client.responses.create(model="m", input="How do I bake bread?")
        assert isinstance(response, Response) and response.output_text == "Knead it."
        assert len(fake.requests) == 1
        refused = client.responses.create(model="m", input="How do I kill my neighbour?")
        assert refused.status == "incomplete" and refused.incomplete_details is not None
        assert refused.incomplete_details.reason == "content_filter" and refused.output_text == REFUSAL
        assert len(fake.requests) == 1, "a blocked input never reaches the upstream"
        events = list(client.responses.create(model="m", input="How do I bake bread?", stream=True))
        assert events[-1].type == "response.completed"
        assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Knead it."


def test_a_harmful_streamed_response_ends_incomplete() -> None:
    with proxy(HARMFUL_ANSWER, every=16) as (client, fake):
        events = list(client.responses.create(model="m", input="How do I bake bread?", stream=True))
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert "kill" not in text and text.endswith(REFUSAL)
        assert events[-1].type == "response.incomplete"
        assert events[-1].response.incomplete_details.reason == "content_filter"  # type: ignore[union-attr]


@pytest.mark.parametrize("messages", [[{"role": "User", "content": "How do I kill?"}],
                                      [{"role": "system", "content": "Be kind."}],
                                      [{"content": "no role"}]])
def test_bad_roles_are_refused_before_any_upstream_hit(messages: list[dict[str, Any]]) -> None:
    with proxy("Knead it.") as (client, fake):
        with pytest.raises(openai.BadRequestError, match="role|user"):
            client.chat.completions.create(model="m", messages=messages)  # type: ignore[arg-type]
        with pytest.raises(openai.BadRequestError):
            client.responses.create(model="m", input=messages)  # type: ignore[arg-type]
        assert fake.requests == []


def test_on_block_error_answers_400_content_filter() -> None:
    with proxy("Knead it.", on_block="error") as (client, fake):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="m", messages=HARMFUL)  # type: ignore[arg-type]
        assert caught.value.code == "content_filter" and fake.requests == []
    with proxy(HARMFUL_ANSWER, on_block="error", every=16) as (client, fake):
        seen: list[ChatCompletionChunk] = []
        with pytest.raises(openai.APIError, match="dangerous"):
            seen.extend(client.chat.completions.create(model="m", messages=BENIGN, stream=True))  # type: ignore[arg-type]
        assert "kill" not in chat_text(seen) and len(fake.requests) == 1


def test_the_proxy_key_is_required_before_any_upstream_hit() -> None:
    with proxy("Knead it.") as (client, fake):
        with pytest.raises(openai.AuthenticationError):
            client.with_options(api_key="wrong").chat.completions.create(model="m", messages=BENIGN)  # type: ignore[arg-type]
        assert fake.requests == []


def test_upstream_settings_are_validated_and_read_from_the_environment(tmp_path) -> None:  # noqa: ANN001
    for bad in ({"upstream": "ftp://x"}, {"on_block": "raise"}, {"stream_mode": "later"}, {"every": 0},
                {"upstream_api_key": ""}):
        with pytest.raises(ConfigError):
            ServeSettings(**bad)  # type: ignore[arg-type]
    path = tmp_path / "guard.toml"
    path.write_text('[serve]\nupstream = "http://127.0.0.1:9/v1"\n')
    table = load_serve_table(path, environ={"GUARDRAIL_UPSTREAM_API_KEY": "sk-up"})
    assert ServeSettings.from_table(table).upstream_api_key == "sk-up"


def test_tool_call_arguments_and_reasoning_are_moderated() -> None:
    tool = {"name": "act", "arguments": '{"do": "kill him"}'}
    with proxy("Calling a tool.", fake_kwargs={"tool_call": tool}, stream_mode="stream_first", every=4) as (client, _):
        chunks = list(client.chat.completions.create(model="m", messages=BENIGN, stream=True))  # type: ignore[arg-type]
        assert not any(c.choices and c.choices[0].delta.tool_calls for c in chunks), "held tool calls never left"
        assert chunks[-1].choices[0].finish_reason == "content_filter"
        whole = client.chat.completions.create(model="m", messages=BENIGN)  # type: ignore[arg-type]
        assert whole.choices[0].finish_reason == "content_filter" and not whole.choices[0].message.tool_calls
    with proxy("Fine.", fake_kwargs={"reasoning": "I could kill them."}) as (client, _):
        chunks = list(client.chat.completions.create(model="m", messages=BENIGN, stream=True))  # type: ignore[arg-type]
        assert chunks[-1].choices[0].finish_reason == "content_filter"
        assert "kill" not in str([c.model_dump() for c in chunks])


def test_a_clean_tool_call_passes_whole() -> None:
    tool = {"name": "bake", "arguments": '{"minutes": 40}'}
    with proxy("Calling a tool.", fake_kwargs={"tool_call": tool}) as (client, _):
        chunks = list(client.chat.completions.create(model="m", messages=BENIGN, stream=True))  # type: ignore[arg-type]
        arguments = "".join(c.choices[0].delta.tool_calls[0].function.arguments or ""  # type: ignore[union-attr]
                            for c in chunks if c.choices and c.choices[0].delta.tool_calls)
        assert arguments == tool["arguments"] and chunks[-1].choices[0].finish_reason == "tool_calls"


def test_upstream_errors_pass_through_and_an_unreachable_upstream_is_502() -> None:
    with proxy("Knead it.", suffix="/nowhere") as (client, fake):
        with pytest.raises(openai.NotFoundError, match="no fake"):
            client.chat.completions.create(model="m", messages=BENIGN)  # type: ignore[arg-type]
        assert len(fake.requests) == 1
    guard = Guard([builtin_policy("dangerous")], scorer=KeywordScorer({"kill": 0.99}))
    app = create_app(guard, settings=ServeSettings(upstream="http://127.0.0.1:9/v1"))
    with running(app) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="m", messages=BENIGN)  # type: ignore[arg-type]
        assert caught.value.status_code == 502
        client.close()


def test_the_service_needs_no_openai_package() -> None:
    code = ("import sys, guardrail.serve, guardrail.serve._proxy; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'openai', 'guardrail_openai'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
