"""The adapter kernel seen from the adapters: one tool-call text rule, and public imports only."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import pytest

from guardrail import Guard, Turn, builtin_policy, tool_call_text
from guardrail.testing import KeywordScorer, RecordingScorer

ROOT = Path(__file__).resolve().parents[1]
CALL = "get_weather"
ARGS = {"city": "Paris", "note": "café"}
# The same call as servers send it: compact, escaped, spaced. One text for all of them.
RAW = ['{"city":"Paris","note":"caf\\u00e9"}', '{"city": "Paris", "note": "café"}']
EXPECTED = 'get_weather({"city": "Paris", "note": "café"})'


def recorder() -> tuple[Guard, RecordingScorer]:
    scorer = RecordingScorer(KeywordScorer({"kill": 0.99}))
    return Guard([builtin_policy("dangerous")], scorer=scorer), scorer


def tool_texts(scorer: RecordingScorer) -> set[str]:
    """The tool-call lines of every output check's response."""
    lines = (line for r in scorer.requests if r.turn.response for line in r.turn.response.split("\n"))
    return {line for line in lines if line.startswith(CALL)}


def test_the_rule_is_canonical_json() -> None:
    assert {tool_call_text(CALL, raw) for raw in RAW} | {tool_call_text(CALL, ARGS)} == {EXPECTED}
    assert tool_call_text(CALL, "not json") == "get_weather(not json)"


@pytest.mark.parametrize("raw", RAW)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("api", ["chat", "responses"])
def test_openai_scores_a_tool_call_as_the_rule_says(raw: str, stream: bool, api: str) -> None:
    pytest.importorskip("openai")
    from guardrail_openai import GuardedOpenAI
    from guardrail_openai.testing import FakeOpenAI

    guard, scorer = recorder()
    client = GuardedOpenAI(FakeOpenAI("Checking.", tool_call={"name": CALL, "arguments": raw}).client(), guard)
    if api == "chat":
        result = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Weather?"}], stream=stream)
    else:
        result = client.responses.create(model="m", input="Weather?", stream=stream)
    if stream:
        list(result)
    assert tool_texts(scorer) == {EXPECTED}


@pytest.mark.parametrize("way", ["invoke", "stream", "ainvoke", "astream"])
def test_langchain_scores_the_same_tool_call_the_same_way(way: str) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.messages import AIMessage

    from guardrail_langchain import GuardedChatModel
    from guardrail_langchain.testing import ScriptedChatModel

    guard, scorer = recorder()
    message = AIMessage("Checking.", tool_calls=[{"name": CALL, "args": ARGS, "id": "c1"}])
    model = GuardedChatModel(chat_model=ScriptedChatModel(responses=[message]), guard=guard)

    async def consume() -> Any:
        if way == "ainvoke":
            return await model.ainvoke("Weather?")
        return [c async for c in model.astream("Weather?")]

    if way.startswith("a"):
        asyncio.run(consume())
    else:
        model.invoke("Weather?") if way == "invoke" else list(model.stream("Weather?"))
    assert tool_texts(scorer) == {EXPECTED}


def test_the_core_scores_a_tool_call_message_the_same_way() -> None:
    guard, scorer = recorder()
    call = {"id": "c1", "type": "function", "function": {"name": CALL, "arguments": RAW[0]}}
    guard.check_output([{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": None, "tool_calls": [call]}])
    assert tool_texts(scorer) == {EXPECTED}
    guard.check_turn(Turn(prompt="Weather?", response=EXPECTED))  # a codec that holds a turn
    assert scorer.requests[-1].turn == Turn(prompt="Weather?", response=EXPECTED)


def _private_core_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
        found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.startswith("guardrail._")]
    return found


def test_code_outside_the_core_imports_only_public_core_names() -> None:
    """The integrations (packages and tests), scripts, benchmarks and examples use the core's public
    API, `guardrail.classifier` included. (`guardrail.serve` is part of the core package and ships
    with it, so it may use the core's modules directly; the core's own tests test its insides.)"""
    roots = [ROOT / "integrations", ROOT / "scripts", ROOT / "benchmarks", ROOT / "examples"]
    files = [p for root in roots if root.exists() for p in root.rglob("*.py")]
    assert len(files) > 40
    assert [hit for path in files for hit in _private_core_imports(path)] == []
