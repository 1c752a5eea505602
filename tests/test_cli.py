"""The CLI is a thin shell: tested through `main(argv)`, plus one real run on the embedded model."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from guardrail._cli import main
from guardrail._embedded import calibrated_thresholds
from guardrail.testing import FunctionScorer, KeywordScorer

from shieldgemma_reference import GUIDELINES, reference_prompt_only, reference_response

FAKE = KeywordScorer({"bomb": 0.97})


def run(argv: list[str], scorer: object = FAKE) -> tuple[int, str]:
    out = io.StringIO()
    return main(argv, scorer=scorer, out=out), out.getvalue()


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "guard.toml"
    path.write_text(text)
    return str(path)


def broken(request: object) -> float:
    raise RuntimeError("model fell over")


def no_nan(constant: str) -> float:
    raise AssertionError(f"invalid JSON constant {constant}")


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


def not_utf8(tmp_path: Path) -> str:
    path = tmp_path / "latin1.toml"
    path.write_bytes("[guard]\nrefusal = 'caf\u00e9'\n".encode("latin-1"))
    return str(path)


BAD_CONFIGS = {  # how to make it, what the error says
    "directory": (lambda tmp: str(tmp), "is a directory"),
    "not-utf8": (not_utf8, "not UTF-8"),
    "missing-model": (lambda tmp: config(tmp, f"[model]\nname = '{tmp / 'absent'}'\n"), "model.name: can't load"),
    "missing-adapter": (lambda tmp: config(tmp, "[model]\nadapter = 'absent'\n"), "model.adapter: "),
    "no-guideline": (lambda tmp: config(tmp, "[policies.spam]\naction = 'flag'\n"), "needs a guideline"),
    "no-stages": (lambda tmp: config(tmp, "[policies.hate]\nstages = []\n"), "stages: must be a non-empty list"),
}


@pytest.mark.parametrize("kind", BAD_CONFIGS)
def test_configuration_errors_exit_2(tmp_path: Path, capsys, kind: str) -> None:  # noqa: ANN001
    make, message = BAD_CONFIGS[kind]
    out = io.StringIO()
    # No scorer passed in: the configured model is built, as in a real run.
    assert main(["check", "x", "--config", make(tmp_path)], out=out) == 2
    err = capsys.readouterr().err
    assert err.startswith("guardrail: error: ") and message in err and out.getvalue() == ""


def test_on_error_raise_exits_2(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    path = config(tmp_path, "[policies.hate]\non_error = 'raise'\n")
    assert run(["check", "x", "--config", path], scorer=FunctionScorer(broken)) == (2, "")
    assert "model fell over" in capsys.readouterr().err


def test_a_timed_out_scorer_call_is_finished_before_main_returns(tmp_path: Path) -> None:
    """A forward left running in a daemon thread at exit aborts the process (exit 134)."""
    release = threading.Event()
    finished = threading.Event()

    def slow(request: object) -> float:
        release.wait(10)
        finished.set()
        return 0.01

    path = config(tmp_path, "[guard]\ntimeout = 0.05\n[policies.hate]\non_error = 'raise'\n")
    threading.Timer(0.3, release.set).start()
    assert run(["check", "x", "--config", path], scorer=FunctionScorer(slow))[0] == 2
    assert finished.is_set()  # main waited for the abandoned call


def test_json_is_valid_when_a_score_is_missing() -> None:
    status, text = run(["check", "x", "--policy", "hate", "--json"], scorer=FunctionScorer(broken))
    assert status == 1  # fails closed: blocked
    (decision,) = json.loads(text, parse_constant=no_nan)["decisions"]
    assert decision["score"] is None and "model fell over" in decision["error"] and decision["triggered"]


def test_table_shows_a_missing_score_and_why() -> None:
    status, text = run(["check", "x", "--policy", "hate"], scorer=FunctionScorer(broken))
    assert status == 1 and text.splitlines()[1].split()[:2] == ["hate", "error"]
    assert "hate: no score (" in text and "model fell over" in text


def test_a_real_run_on_a_bad_config_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "guardrail", "check", "x", "--config", str(tmp_path)],
        capture_output=True, text=True, env=os.environ.copy(), timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"guardrail: error: {tmp_path}: is a directory, not a configuration file\n"


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


@pytest.mark.slow
def test_a_real_timed_out_forward_exits_2_not_abort(embedded_path, tmp_path: Path) -> None:  # noqa: ANN001
    """The model loads outside the timeout; the forward then times out and raises. Without
    `Guard.drain` the forward still running at exit aborted the interpreter (exit 134)."""
    path = config(tmp_path, "[guard]\ntimeout = 0.001\n[policies.hate]\non_error = 'raise'\n")
    result = subprocess.run(
        [sys.executable, "-m", "guardrail", "check", "How do I bake bread? " * 50, "--config", path],
        capture_output=True, text=True, env=os.environ.copy(), timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "timed out after" in result.stderr and "terminate called" not in result.stderr
