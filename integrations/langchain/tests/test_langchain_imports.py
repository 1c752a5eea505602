"""Import hygiene, and the example running end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


def test_import_guardrail_imports_neither_langchain_nor_openai() -> None:
    loaded = modules_after("import guardrail")
    assert not loaded & {"langchain", "langchain_core", "langgraph", "openai", "torch"}


def test_import_guardrail_langchain_leaves_agents_and_models_unloaded() -> None:
    loaded = modules_after("import guardrail_langchain")
    assert "langchain_core" in loaded
    assert not loaded & {"langchain", "langgraph", "openai", "torch", "transformers"}


def test_example_runs_offline_with_the_fake_scorer() -> None:
    script = ROOT / "examples" / "langchain_chain.py"
    out = subprocess.run(
        [sys.executable, str(script), "--fake"], capture_output=True, text=True, check=True, timeout=120
    )
    lines = out.stdout.splitlines()
    assert lines[0].startswith("invoke: 'Mix flour")
    assert lines[1].startswith("invoke: blocked at output")
    assert lines[2].startswith("stream: [") and "bake" in lines[2]
    assert lines[3].startswith("astream: blocked at output")
    assert lines[4].startswith("invoke: blocked at input")
    assert "kill" not in out.stdout
