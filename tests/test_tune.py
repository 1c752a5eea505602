"""`tune` on a tiny randomly initialised Gemma 3 with the real tokenizer: fast, no shared data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardrail import BUILTIN_POLICIES, ConfigError, ScoreRequest, Stage, Turn, load_config
from guardrail._cli import main
from guardrail._data import LabeledExample, dataset_hash, labeled_pairs, load_labeled, split_examples
from guardrail._tune import TuneOptions, _better, read_training_record, tune

pytestmark = pytest.mark.slow
# peft 0.21 calls a transformers 5 deprecated alias when it loads an adapter.


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, gemma3_tokenizer: object) -> Path:
    """A 2-layer random Gemma 3 with the real tokenizer, saved as a local model directory."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = gemma3_tokenizer
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=1024,
        sliding_window=64, pad_token_id=0, bos_token_id=2, eos_token_id=1,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-gemma3")
    Gemma3ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _rows() -> list[dict]:
    rows = []
    for n in range(12):
        bad = n % 2 == 0
        rows.append({"id": f"in{n}", "prompt": f"zebra attack number {n}" if bad else f"bake bread {n}",
                     "response": None, "labels": {"hate": int(bad)}})
        rows.append({"id": f"out{n}", "prompt": "hi", "response": f"zebra zebra {n}" if bad else f"hello {n}",
                     "labels": {"hate": int(bad), "sexual": 0}})
    rows.append({"id": "unlabeled", "prompt": "x", "response": None, "labels": {}})
    return rows


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
    return path


FAST = TuneOptions(epochs=3, learning_rate=3e-2, batch_size=8, rank=4, alpha=8, loss="binary",
                   val_fraction=0.25, seed=7, dtype="float32")


def test_pairs_only_known_labels_and_split_is_deterministic(data_file: Path) -> None:
    rows = load_labeled([data_file])
    pairs = labeled_pairs(rows, ["hate", "sexual"])
    assert len(pairs) == 24 + 12  # every row has hate, only output rows have sexual; unlabeled row none
    assert {p.stage for p in pairs if p.policy == "sexual"} == {Stage.OUTPUT}
    assert split_examples(rows, fraction=0.25, seed=1) == split_examples(rows, fraction=0.25, seed=1)
    train, val = split_examples(rows, fraction=0.25, seed=1)
    assert len(val) == round(len(rows) * 0.25) and not {r.id for r in train} & {r.id for r in val}


def test_bad_rows_are_config_errors(tmp_path: Path) -> None:
    for line in ('{"prompt": 3, "labels": {}}', '{"prompt": "x", "labels": {"hate": 2}}', "not json"):
        path = tmp_path / "bad.jsonl"
        path.write_text(line + "\n", encoding="utf-8")
        with pytest.raises(ConfigError, match="bad.jsonl:1"):
            load_labeled([path])
    with pytest.raises(ConfigError, match="no such data file"):
        load_labeled([tmp_path / "missing.jsonl"])


def test_rows_may_hold_unicode_line_separators(tmp_path: Path) -> None:
    # json.dumps(ensure_ascii=False) leaves U+2028 raw; str.splitlines() would cut the row there
    path = tmp_path / "data.jsonl"
    rows = [{"prompt": "one\u2028two\x85three", "labels": {"hate": 0}}, {"prompt": "next", "labels": {"hate": 1}}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert [(e.prompt, e.labels) for e in load_labeled([path])] == [("one\u2028two\x85three", {"hate": 0}),
                                                                    ("next", {"hate": 1})]
    assert dataset_hash([path]).rows == 2


@pytest.mark.parametrize("change", [{"epochs": 0}, {"loss": "sequence"}, {"learning_rate": 0}, {"target_modules": ()},
                                    {"select_by": "f1"}, {"val_fraction": 1.0}, {"patience": 0}])
def test_options_are_validated(change: dict) -> None:
    with pytest.raises(ConfigError):
        TuneOptions(**change)


def test_best_checkpoint_rule() -> None:
    assert _better({"roc_auc": 0.8, "loss": 0.9}, {"roc_auc": 0.7, "loss": 0.1}, "roc_auc")
    assert not _better({"roc_auc": 0.8, "loss": 0.9}, {"roc_auc": 0.7, "loss": 0.1}, "loss")
    assert _better({"roc_auc": None, "loss": 0.2}, {"roc_auc": None, "loss": 0.3}, "roc_auc")


def test_tune_writes_a_loadable_adapter_with_a_model_card(tiny_model: Path, data_file: Path, tmp_path: Path) -> None:
    from guardrail._transformers import TransformersScorer

    out = tmp_path / "adapter"
    result = tune(str(tiny_model), load_labeled([data_file]), out_dir=out, policies=["hate", "sexual"],
                  options=FAST, data=dataset_hash([data_file]), progress=False)
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    assert len(result.history) == 3 and 1 <= result.best_epoch <= 3
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    record = read_training_record(out)
    assert record["options"]["rank"] == 4 and record["data"]["sha256"] == dataset_hash([data_file]).sha256
    assert record["train_counts"]["sexual/output"]["negative"] > 0
    card = (out / "README.md").read_text(encoding="utf-8")
    for needle in (str(tiny_model), "learning_rate", "ROC-AUC", "hate/input", "sexual/output", "Kept epoch"):
        assert needle in card

    base = TransformersScorer.from_pretrained(str(tiny_model), dtype="float32")
    tuned = TransformersScorer.from_pretrained(str(tiny_model), dtype="float32", adapter=str(out))
    guideline = BUILTIN_POLICIES["hate"].guideline(Stage.INPUT)
    requests = [ScoreRequest(turn=Turn(prompt=p), guideline=guideline) for p in ("zebra attack", "bake bread")]
    assert tuned.score(requests) != pytest.approx(base.score(requests), abs=1e-4)
    # The adapter's validation scores are the ones the scorer reproduces (same prompt, same reading).
    toml = tmp_path / "guard.toml"
    toml.write_text(f'[model]\nname = "{tiny_model}"\ndtype = "float32"\nadapter = "{out}"\n\n[policies.hate]\n')
    guard = load_config(toml).build_guard()
    verdict = guard.check_input("zebra attack")
    assert verdict.decisions[0].score == pytest.approx(tuned.score(requests[:1])[0], abs=1e-5)


def test_tune_is_deterministic(tiny_model: Path, data_file: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    rows = load_labeled([data_file])
    options = TuneOptions(**{**FAST.__dict__, "epochs": 1})
    weights = []
    for name in ("a", "b"):
        tune(str(tiny_model), rows, out_dir=tmp_path / name, policies=["hate"], options=options, progress=False)
        weights.append(load_file(str(tmp_path / name / "adapter_model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    assert all((weights[0][k] == weights[1][k]).all() for k in weights[0])


def test_tune_refuses_data_without_labels_for_the_policies(tiny_model: Path, data_file: Path, tmp_path: Path) -> None:
    rows = [LabeledExample(id="x", prompt="p", labels={"dangerous": 1})]
    with pytest.raises(ConfigError, match="no training example"):
        tune(str(tiny_model), rows, out_dir=tmp_path / "a", policies=["hate"], options=FAST, progress=False)


def test_cli_tune(tiny_model: Path, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli-adapter"
    code = main(["tune", str(data_file), "--model", str(tiny_model), "--out", str(out), "--policy", "hate",
                 "--epochs", "1", "--rank", "2", "--loss", "binary", "--dtype", "float32", "--quiet"])
    assert code == 0 and (out / "adapter_config.json").exists()
    assert read_training_record(out)["policies"] == ["hate"]
    assert main(["tune", str(tmp_path / "missing.jsonl"), "--out", str(out)]) == 2
    assert "no such data file" in capsys.readouterr().err


def test_a_run_can_start_from_a_saved_adapter(tiny_model: Path, data_file: Path, tmp_path: Path) -> None:
    import dataclasses

    import torch
    from safetensors.torch import load_file

    from guardrail._tune import _load

    first = tmp_path / "first"
    before = tune(str(tiny_model), load_labeled([data_file]), out_dir=first, policies=["hate", "sexual"],
                  options=dataclasses.replace(FAST, epochs=1), progress=False)
    saved = load_file(str(first / "adapter_model.safetensors"))
    model, _, _ = _load(str(tiny_model), dataclasses.replace(FAST, init_adapter=str(first)))
    loaded = {k.replace(".default", ""): v for k, v in model.state_dict().items() if "lora_" in k}
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)  # trained, not peft's zero init
    # going on from it: the run's first loss is the first run's last, not a fresh LoRA's
    again = tune(str(tiny_model), load_labeled([data_file]), out_dir=tmp_path / "again", policies=["hate", "sexual"],
                 options=dataclasses.replace(FAST, epochs=1, learning_rate=1e-9, init_adapter=str(first)),
                 progress=False)
    assert again.history[0]["loss"] == pytest.approx(before.history[0]["loss"], rel=1e-4)
    for bad in ({"rank": 8}, {"target_modules": ("q_proj",)}):
        with pytest.raises(ConfigError, match="init_adapter"):
            _load(str(tiny_model), dataclasses.replace(FAST, init_adapter=str(first), **bad))
    with pytest.raises(ConfigError, match="not a readable LoRA adapter"):
        _load(str(tiny_model), dataclasses.replace(FAST, init_adapter=str(tmp_path)))
