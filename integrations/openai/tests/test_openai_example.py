"""The offline example runs end to end with the keyword scorer."""

from __future__ import annotations

import doctest
import importlib.util
from pathlib import Path

import guardrail_openai.testing

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "openai_client.py"


def test_example_runs_offline_with_the_fake_scorer(capsys):
    spec = importlib.util.spec_from_file_location("openai_client_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--fake"]) == 0
    out = capsys.readouterr().out
    assert "bread  -> stop | Mix flour" in out
    assert "harm   -> content_filter | I can't help with that." in out
    assert "[content_filter]" in out and "detonator" not in out
    assert "raised Blocked" in out


def test_fake_server_docstring():
    assert doctest.testmod(guardrail_openai.testing).failed == 0
