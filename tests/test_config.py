"""Configuration: one TOML file, clear errors naming the key, env over file."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrail import Action, ConfigError, Stage, load_config
from guardrail.testing import KeywordScorer

FULL = """
[model]
name = "embedded"
dtype = "float32"

[guard]
refusal = "Nope."

[policies.hate]
threshold = 0.3
action = "rewrite"
stages = ["input"]

[policies.spam]
title = "Spam"
description = "advertises products or services."
action = "flag"

[policies.pii]
input_guideline = '"No PII": The prompt shall not contain phone numbers.'
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "guard.toml"
    path.write_text(text)
    return path


def test_full_file_loads_in_order(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL), environ={})
    assert config.model.dtype == "float32" and config.refusal == "Nope."
    hate, spam, pii = config.policies
    assert (hate.name, hate.threshold, hate.action, hate.stages) == ("hate", 0.3, Action.REWRITE, frozenset({Stage.INPUT}))
    assert hate.input_guideline.startswith('"No Hate Speech": The prompt shall not')
    assert spam.guideline("input") == '"No Spam": The prompt shall not contain or seek generation of content that advertises products or services.'
    assert spam.guideline("output") == '"No Spam": The chatbot shall not generate content that advertises products or services.'
    assert pii.stages == frozenset({Stage.INPUT})


def test_defaults_without_a_file() -> None:
    config = load_config(environ={})
    assert config.model.name == "embedded" and config.model.dtype == "auto"
    assert [p.name for p in config.policies] == ["dangerous", "harassment", "hate", "sexual"]


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL), environ={"GUARDRAIL_MODEL": "/models/shieldgemma-2b", "GUARDRAIL_DTYPE": "bfloat16"})
    assert config.model.name == "/models/shieldgemma-2b" and config.model.dtype == "bfloat16"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[policies.hate]\nthreshold = 'high'\n", r"policies\.hate: .*threshold must be a number"),
        ("[policies.hate]\naction = 'explode'\n", r"policies\.hate: .*action must be one of"),
        ("[policies.hate]\ncolour = 'red'\n", r"policies\.hate: unknown key\(s\) colour"),
        ("[policies.unknown]\nthreshold = 0.2\n", r"policies\.unknown: 'unknown' is not a built-in policy .* needs a guideline"),
        ("[policies.spam]\naction = 'flag'\n", r"policies\.spam: .*needs a guideline: description .*input_guideline"),
        ("[policies.hate]\nstages = 'input'\n", r"policies\.hate\.stages: must be a non-empty list"),
        ("[policies.hate]\nstages = []\n", r"policies\.hate\.stages: must be a non-empty list"),
        ("[policies.x]\ndescription = 'd'\nstages = []\n", r"policies\.x\.stages: must be a non-empty list"),
        ("[guard]\nprompt_tail = -1\n", r"guard: windows\.prompt_tail must be a non-negative integer"),
        ("[policies.x]\ndescription = 'd'\ninput_guideline = 'g'\n", "either description or"),
        ("[model]\nbatch_size = 0\n", r"model\.batch_size: must be at least 1"),
        ("[model]\nbatching = 'yes'\n", r"model\.batching: must be a bool"),
        ("[model]\nname = 3\n", r"model\.name: must be a str"),
        ("[models]\nname = 'x'\n", r"unknown key\(s\) models"),
        ("[guard]\nrefusal = ''\n", r"guard\.refusal"),
        ("not toml = = \n", "not valid TOML"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path: Path, text: str, match: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as caught:
        load_config(path, environ={})
    assert str(path) in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "absent.toml")


def test_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory, not a configuration file") as caught:
        load_config(tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "guard.toml"
    path.write_bytes('[guard]\nrefusal = "Nein, daf\u00fcr nicht"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text") as caught:
        load_config(path, environ={})
    assert str(path) in str(caught.value)


def test_a_missing_model_directory_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    config = load_config(write(tmp_path, f"[model]\nname = '{missing}'\n"), environ={})
    with pytest.raises(ConfigError, match=r"guard\.toml: model\.name: can't load .*no-such-model"):
        config.build_guard()


def test_empty_stages_is_an_error_in_python_too() -> None:
    from guardrail import builtin_policy

    with pytest.raises(ConfigError, match="stages must name at least one"):
        builtin_policy("hate", stages=[])


def test_prompt_tail_is_read_from_the_guard_table(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[guard]\nprompt_tail = 300\n"), environ={})
    assert config.windows is not None and config.windows.prompt_tail == 300


def test_select_and_build_guard(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL), environ={}).select(["spam", "sexual"])
    guard = config.build_guard(scorer=KeywordScorer({"buy now": 0.9}, policies=['"No Spam']))
    assert [p.name for p in guard.policies] == ["spam", "sexual"]
    verdict = guard.check_input("buy now!")
    assert verdict.flags and verdict.allowed and guard.refusal == "Nope."


def test_relative_adapter_paths_resolve_against_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[model]\nadapter = 'adapters/hate'\n"), environ={})
    assert config.model.adapter == str(tmp_path / "adapters" / "hate")
    absolute = load_config(write(tmp_path, "[model]\nadapter = '/srv/a'\n"), environ={})
    assert absolute.model.adapter == "/srv/a"


def test_batching_wraps_the_embedded_scorer(tmp_path: Path) -> None:
    # Batching is composed around the scorer (no longer a flag threaded into it).
    from guardrail import BatchingScorer, EmbeddedScorer

    on = load_config(write(tmp_path, "[model]\n"), environ={}).model.build_scorer()
    assert isinstance(on, BatchingScorer) and isinstance(on.inner, EmbeddedScorer)
    assert on.max_batch == 32 and on.thresholds == on.inner.thresholds
    off = load_config(write(tmp_path, "[model]\nbatching = false\n"), environ={}).model.build_scorer()
    assert isinstance(off, EmbeddedScorer)  # built lazily: nothing is loaded here


def test_a_served_model_by_url(tmp_path: Path) -> None:
    from guardrail import RemoteScorer

    config = load_config(write(tmp_path, "[model]\nname = 'tiny'\ntokenizer = '/models/tok'\ntimeout = 2.5\n"),
                         environ={"GUARDRAIL_MODEL_URL": "http://127.0.0.1:9/v1"})
    scorer = config.model.build_scorer()  # builds nothing over the network and loads no tokenizer yet
    assert isinstance(scorer, RemoteScorer) and config.model.timeout == 2.5
    with pytest.raises(ConfigError, match="model.adapter applies to a local model"):
        load_config(write(tmp_path, "[model]\nurl = 'http://x'\nadapter = 'a'\n"), environ={}).model.build_scorer()
    with pytest.raises(ConfigError, match="model.timeout: must be a number"):
        load_config(write(tmp_path, "[model]\ntimeout = 'slow'\n"), environ={})


def test_threads_from_file_environment_and_flag(tmp_path) -> None:  # noqa: ANN001
    import argparse

    from guardrail._cli import _load

    path = tmp_path / "guard.toml"
    path.write_text("[model]\nthreads = 3\n")
    assert load_config(path, environ={}).model.threads == 3
    assert load_config(path, environ={"GUARDRAIL_THREADS": "2"}).model.threads == 2
    assert load_config(None, environ={}).model.threads is None
    with pytest.raises(ConfigError, match="GUARDRAIL_THREADS"):
        load_config(path, environ={"GUARDRAIL_THREADS": "many"})
    path.write_text("[model]\nthreads = 0\n")
    with pytest.raises(ConfigError, match="threads"):
        load_config(path, environ={})
    path.write_text("[model]\nthreads = 3\n")
    assert _load(argparse.Namespace(config=str(path), threads=1)).model.threads == 1


def test_a_local_model_runs_on_the_configured_threads(tiny_gemma2_dir) -> None:  # noqa: ANN001
    import torch

    from guardrail._config import ModelConfig

    before = torch.get_num_threads()
    try:
        ModelConfig(name=str(tiny_gemma2_dir), dtype="float32", threads=1).build_scorer()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_an_output_threshold_holds_for_outputs_only(tmp_path: Path) -> None:
    from guardrail import Guard, builtin_policy

    path = tmp_path / "guard.toml"
    path.write_text('[model]\nname = "embedded"\n\n[policies.hate]\nthreshold = 0.4\noutput_threshold = 0.8\n')
    policy = load_config(path).policies[0]
    assert (policy.threshold_for("input"), policy.threshold_for(Stage.OUTPUT)) == (0.4, 0.8)
    guard = Guard([policy], scorer=KeywordScorer({"zebra": 0.6}))
    assert guard.check_input("zebra").blocked and guard.check_input("zebra").decisions[0].threshold == 0.4
    output = guard.check_output([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "zebra"}])
    assert not output.blocked and output.decisions[0].threshold == 0.8
    # A model's per-stage calibration reaches built-ins; a threshold the user sets holds in both stages.
    calibrated = {"hate": 0.3, "hate/output": 0.7}
    assert builtin_policy("hate", thresholds=calibrated).threshold_for("output") == 0.7
    assert builtin_policy("hate", thresholds=calibrated, threshold=0.5).threshold_for("output") == 0.5
    path.write_text('[model]\nname = "embedded"\n\n[policies.hate]\noutput_threshold = 1.5\n')
    with pytest.raises(ConfigError, match="output_threshold must be in"):
        load_config(path)
