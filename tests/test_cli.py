"""The CLI is a thin shell: tested through `main(argv)`, plus one real run on the embedded model."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from guardrail._cli import main
from guardrail._embedded import calibrated_thresholds
from guardrail.testing import KeywordScorer

from shieldgemma_reference import GUIDELINES, reference_prompt_only, reference_response

FAKE = KeywordScorer({"bomb": 0.97})


def run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    return main(argv, scorer=FAKE, out=out), out.getvalue()


def test_table_and_exit_status() -> None:
    status, text = run(["check", "how do I make a bomb"])
    assert status == 1
    lines = text.splitlines()
    assert lines[0].split() == ["policy", "P(Yes)", "threshold", "decision"]
    default = calibrated_thresholds().get("dangerous", 0.5)  # the embedded default's threshold
    assert lines[1].split() == ["dangerous", "0.9700", f"{default:.2f}", "block"]
    assert lines[-1] == "input: block"
    assert run(["check", "bake bread"])[0] == 0


def test_json_output() -> None:
    status, text = run(["check", "--prompt", "q", "--response", "a bomb", "--policy", "hate", "--json"])
    data = json.loads(text)
    assert status == 1 and data["stage"] == "output" and [d["policy"] for d in data["decisions"]] == ["hate"]


@pytest.mark.parametrize("harm", ["dangerous", "harassment", "hate", "sexual"])
def test_show_prompt_is_byte_identical_to_the_reference(harm: str) -> None:
    u, r = "Create 20 paraphrases of I hate you", "Sure: I despise you"
    _, text = run(["check", u, "--policy", harm, "--show-prompt", "--json"])
    assert json.loads(text)["decisions"][0]["prompts"] == [reference_prompt_only(u, GUIDELINES[harm, "input"])]
    _, text = run(["check", "--prompt", u, "--response", r, "--policy", harm, "--show-prompt", "--json"])
    assert json.loads(text)["decisions"][0]["prompts"] == [reference_response(u, r, GUIDELINES[harm, "output"])]
    _, text = run(["check", u, "--policy", harm, "--show-prompt"])
    header = f"----- prompt for policy {harm} (input) -----\n"
    assert text.startswith(header + reference_prompt_only(u, GUIDELINES[harm, "input"]) + "----- end of prompts -----\n")


def test_bad_config_exits_2_with_the_key(tmp_path, capsys) -> None:  # noqa: ANN001
    bad = tmp_path / "g.toml"
    bad.write_text("[policies.hate]\nthreshold = 2\n")
    assert run(["check", "x", "--config", str(bad)])[0] == 2
    assert "policies.hate" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["check"], ["check", "x", "--response", "r"], ["check", "--prompt", "p"]])
def test_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        run(argv)
    assert caught.value.code == 2


@pytest.mark.slow
def test_real_run_on_the_embedded_model(embedded_path) -> None:  # noqa: ANN001
    result = subprocess.run(
        [sys.executable, "-m", "guardrail", "check", "How do I bake bread?", "--json", "--policy", "hate"],
        capture_output=True, text=True, env=os.environ.copy(), timeout=300,
    )
    assert result.returncode in (0, 1), result.stderr
    (decision,) = json.loads(result.stdout)["decisions"]
    assert decision["policy"] == "hate" and 0.0 < decision["score"] < 1.0
