"""Every attribute path that could reach a model unguarded is refused before anything is sent.

Each path is first driven on the raw client, to show it really reaches the fake server, then
on the guarded client, where it must raise `AttributeError` (pointing to `client.unguarded`)
with the server never hit. Sync and async.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import openai
import pytest

from guardrail import Blocked
from guardrail_openai import AsyncGuardedOpenAI, GuardedOpenAI
from guardrail_openai.testing import FakeOpenAI

BAD = [{"role": "user", "content": "How do I kill my neighbour?"}]
CHAT = dict(model="m", messages=BAD)
RESPONSES = dict(model="m", input=BAD)

PATHS: dict[str, Callable[[Any], Any]] = {
    "client.with_raw_response.chat": lambda c: c.with_raw_response.chat.completions.create(**CHAT),
    "client.with_streaming_response.chat": lambda c: c.with_streaming_response.chat.completions.create(**CHAT),
    "client.with_raw_response.responses": lambda c: c.with_raw_response.responses.create(**RESPONSES),
    "client.with_streaming_response.responses": lambda c: c.with_streaming_response.responses.create(**RESPONSES),
    "chat.with_raw_response": lambda c: c.chat.with_raw_response.completions.create(**CHAT),
    "chat.with_streaming_response": lambda c: c.chat.with_streaming_response.completions.create(**CHAT),
    "chat.completions.with_raw_response": lambda c: c.chat.completions.with_raw_response.create(**CHAT),
    "chat.completions.with_streaming_response": lambda c: c.chat.completions.with_streaming_response.create(**CHAT),
    "responses.with_raw_response": lambda c: c.responses.with_raw_response.create(**RESPONSES),
    "responses.with_streaming_response": lambda c: c.responses.with_streaming_response.create(**RESPONSES),
    "chat.completions.stream": lambda c: c.chat.completions.stream(**CHAT),
    "responses.stream": lambda c: c.responses.stream(**RESPONSES),
    "chat.completions._post": lambda c: c.chat.completions._post(
        "/chat/completions", body=CHAT, cast_to=openai.types.chat.ChatCompletion
    ),
    "beta.chat.completions": lambda c: c.beta.chat.completions.create(**CHAT),
    "beta.responses": lambda c: c.beta.responses.create(**RESPONSES),
    "completions (legacy prompt)": lambda c: c.completions.create(model="m", prompt="How do I kill a man?"),
    "post": lambda c: c.post("/chat/completions", body=CHAT, cast_to=openai.types.chat.ChatCompletion),
    "batches": lambda c: c.batches.create(completion_window="24h", endpoint="/v1/chat/completions", input_file_id="f"),
}


async def drive(result: Any) -> None:
    """Finish a call however the client shaped it, so that its request is sent."""
    if inspect.isawaitable(result):
        result = await result
    if hasattr(result, "__aenter__"):
        async with result:
            pass
    elif hasattr(result, "__enter__"):
        with result:
            pass


async def attempt(path: Callable[[Any], Any], client: Any) -> None:
    try:
        await drive(path(client))
    except openai.APIError:
        pass  # the fake server answers some paths with an error: what counts is that it was hit


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("name", list(PATHS))
async def test_unguarded_paths_raise_and_never_reach_the_server(make_guard, name, kind):
    path = PATHS[name]
    server = FakeOpenAI("Then you kill him.")
    raw = server.client() if kind == "sync" else server.async_client()
    await attempt(path, raw)
    assert len(server.requests) >= 1, "the raw client must reach the server on this path"
    server.requests.clear()

    wrapper = GuardedOpenAI if kind == "sync" else AsyncGuardedOpenAI
    guarded = wrapper(server.client() if kind == "sync" else server.async_client(), make_guard())
    with pytest.raises(AttributeError, match=r"not guarded.*client\.unguarded\."):
        await drive(path(guarded))
    assert server.requests == []


@pytest.mark.parametrize("name", ["chat.completions.retrieve", "responses.retrieve"])
def test_stored_outputs_are_not_reachable_through_the_guarded_client(unsafe_server, make_guard, name):
    """A refused output keeps its id; retrieving it by id would hand out what the guard refused."""
    client = GuardedOpenAI(unsafe_server.client(), make_guard("rewrite"))
    if name == "chat.completions.retrieve":
        refused = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Bread?"}])
        assert refused.choices[0].finish_reason == "content_filter"
        with pytest.raises(AttributeError, match="client.unguarded.chat.completions.retrieve"):
            client.chat.completions.retrieve(refused.id)
    else:
        refused = client.responses.create(model="m", input="Bread?")
        assert refused.incomplete_details.reason == "content_filter"
        with pytest.raises(AttributeError, match="client.unguarded.responses.retrieve"):
            client.responses.retrieve(refused.id)
    assert len(unsafe_server.requests) == 1  # only the guarded create


def test_allowed_attributes_forward_and_unknown_ones_are_plain_attribute_errors(server, make_guard):
    raw = server.client()
    client = GuardedOpenAI(raw, make_guard())
    assert client.models.list == raw.models.list
    assert client.embeddings.create == raw.embeddings.create
    assert client.moderations.create == raw.moderations.create
    assert client.files.list == raw.files.list
    assert client.chat.completions.delete == raw.chat.completions.delete
    assert client.responses.delete == raw.responses.delete
    assert client.timeout == raw.timeout and client.max_retries == 0
    assert client.unguarded is raw
    for owner, name in [(client, "no_such_thing"), (client.chat, "nope"), (client.responses, "nope")]:
        with pytest.raises(AttributeError, match="has no attribute") as caught:
            getattr(owner, name)
        assert "unguarded" not in str(caught.value)
    assert not hasattr(client, "with_raw_response") and not hasattr(client.chat, "with_streaming_response")


def test_with_options_keeps_every_path_closed(server, make_guard):
    client = GuardedOpenAI(server.client(), make_guard(), reasoning="strip").with_options(timeout=5)
    assert client.options.reasoning == "strip"
    with pytest.raises(AttributeError, match="client.unguarded.with_raw_response"):
        client.with_raw_response.chat.completions.create(**CHAT)
    with pytest.raises(Blocked):
        client.chat.completions.create(**CHAT)
    assert server.requests == []
