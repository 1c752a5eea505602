"""The shared-prefix training step and resumable runs, on tiny random Gemma 2 / Gemma 3 models."""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import pytest

from guardrail import BUILTIN_POLICIES, ConfigError
from guardrail._cli import main
from guardrail._data import LabeledExample, labeled_pairs, load_labeled
from guardrail._tune import RunOptions, TuneOptions, tune
from guardrail._tune_steps import Head, Row, encode_rows, micro_batches, plan_epoch, step_loss

pytestmark = pytest.mark.slow

POLICIES = {name: BUILTIN_POLICIES[name] for name in ("dangerous", "harassment", "hate", "sexual")}
LONG = " ".join(f"word{n}" for n in range(60))  # past the tiny models' 24-token sliding window


def _examples() -> list[LabeledExample]:
    return [
        LabeledExample(id="a", prompt=f"zebra attack {LONG}", labels={"hate": 1, "sexual": 0, "dangerous": 1}),
        LabeledExample(id="b", prompt="bake bread", labels={"hate": 0}),
        LabeledExample(id="c", prompt="hi", response="zebra zebra", labels={"hate": 1, "harassment": 1}),
        LabeledExample(id="d", prompt="tell me", response=f"hello {LONG}", labels={"sexual": 0}),
    ]


@pytest.fixture
def lora(tiny_model_dir: Path):  # noqa: ANN201
    """The tiny model with a LoRA adapter whose B is random too, so every gradient is non-zero."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(3)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    with warnings.catch_warnings():  # peft 0.21 calls a transformers 5 deprecated alias
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        model = get_peft_model(base, config)
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def _head(model, tokenizer) -> Head:  # noqa: ANN001
    softcap = getattr(model.config, "final_logit_softcapping", None)
    return Head(weight=model.get_output_embeddings().weight, rows=None, softcap=softcap, pad_id=tokenizer.pad_token_id)


def _separate_loss(model, tokenizer, pairs) -> float:  # noqa: ANN001
    """The reference: every pair its own prompt, one forward each, mean cross-entropy."""
    import torch

    from guardrail._tokens import answer_token_ids, control_token_ids, encode_request
    from guardrail._tune import _requests

    yes, no = answer_token_ids(tokenizer)
    controls = control_token_ids(tokenizer)
    total = 0.0
    for request, pair in zip(_requests(pairs, POLICIES), pairs):
        ids = torch.tensor([encode_request(tokenizer, request, controls)])
        logits = model(input_ids=ids).logits[0, -1:].float()
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([yes if pair.label else no])) / len(pairs)
        loss.backward()
        total += loss.item()
    return total


def _grads(model) -> list:  # noqa: ANN001
    grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    return grads


@pytest.mark.parametrize("max_tokens", [100_000, 64])
def test_a_shared_step_has_the_loss_and_gradients_of_separate_prompts(lora, max_tokens: int) -> None:  # noqa: ANN001
    import torch

    from guardrail._tokens import answer_token_ids, control_token_ids
    from guardrail._transformers import _decoder, cache_argument

    model, tokenizer = lora
    pairs = labeled_pairs(_examples(), list(POLICIES))
    rows, skipped = encode_rows(tokenizer, pairs, POLICIES, control_token_ids(tokenizer), max_length=4096)
    assert skipped == 0 and sorted(r.pairs for r in rows) == [1, 1, 2, 3]
    expected = _separate_loss(model, tokenizer, pairs)
    reference = _grads(model)
    decoder = _decoder(model)
    step = list(range(len(rows)))
    assert len(micro_batches(rows, step, max_tokens)) == (1 if max_tokens > 1000 else len(rows))
    loss = step_loss(model, decoder, cache_argument(decoder), _head(model, tokenizer), rows, step,
                     targets=answer_token_ids(tokenizer), max_tokens=max_tokens)
    assert loss == pytest.approx(expected, rel=1e-5)
    for got, want in zip(_grads(model), reference, strict=True):
        assert (got - want).abs().max() <= 5e-4 * want.abs().max(), (got - want).abs().max()  # fp32 sums reordered


def test_rows_group_a_texts_policies_and_skip_what_is_too_long(gemma3_tokenizer) -> None:  # noqa: ANN001
    from guardrail._tokens import control_token_ids

    pairs = labeled_pairs(_examples(), list(POLICIES))
    rows, skipped = encode_rows(gemma3_tokenizer, pairs, POLICIES, control_token_ids(gemma3_tokenizer), max_length=4096)
    first = next(r for r in rows if r.pairs == 3)
    assert first.labels == (1, 1, 0)  # in the order of the policies asked for: dangerous, hate, sexual
    single = next(r for r in rows if r.pairs == 1 and len(r.prefix) < 100)
    assert len(single.prefix) > 30 and len(single.suffixes[0]) > 30  # cut where the guideline starts
    short, skipped = encode_rows(gemma3_tokenizer, pairs, POLICIES, control_token_ids(gemma3_tokenizer),
                                 max_length=150)
    assert skipped > 0 and all(r.length <= 150 for r in short)


def test_an_epoch_plan_takes_every_row_once_in_steps_of_whole_rows() -> None:
    rng = random.Random(5)
    rows = [Row(prefix=(1,) * rng.randint(5, 60), suffixes=((2,),) * rng.randint(1, 4), labels=(0,)) for _ in range(200)]
    steps = plan_epoch(rows, 8, random.Random(1))
    assert sorted(i for step in steps for i in step) == list(range(200))
    short = [s for s in steps if sum(rows[i].pairs for i in s) < 8]
    assert len(short) <= 2  # only a window's last step may hold fewer than batch_size pairs
    assert plan_epoch(rows, 8, random.Random(1)) == steps != plan_epoch(rows, 8, random.Random(2))


def _data(tmp_path: Path) -> Path:
    rows = []
    for n in range(16):
        bad = n % 2 == 0
        rows.append({"id": f"in{n}", "prompt": f"zebra attack {n}" if bad else f"bake bread {n}",
                     "labels": {"hate": int(bad), "sexual": 0} if n % 3 else {"hate": int(bad)}})
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


OPTIONS = TuneOptions(epochs=2, learning_rate=3e-2, batch_size=4, rank=4, alpha=8, val_fraction=0.25, seed=7,
                      dtype="float32", dropout=0.1)


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


def test_a_stopped_run_resumed_ends_exactly_as_an_uninterrupted_one(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = load_labeled([_data(tmp_path)])
    whole = tune(str(tiny_model_dir), rows, out_dir=tmp_path / "whole", policies=["hate", "sexual"],
                 options=OPTIONS, progress=False, run=RunOptions(checkpoint_every=2))
    assert whole.finished and whole.steps > 4
    stopped = tune(str(tiny_model_dir), rows, out_dir=tmp_path / "parts", policies=["hate", "sexual"],
                   options=OPTIONS, progress=False, run=RunOptions(checkpoint_every=2, max_steps=3))
    assert not stopped.finished and stopped.steps == 3
    assert (tmp_path / "parts" / "checkpoint" / "adapter" / "adapter_model.safetensors").exists()
    again = tune(str(tiny_model_dir), rows, out_dir=tmp_path / "parts", policies=["hate", "sexual"],
                 options=OPTIONS, progress=False,
                 run=RunOptions(checkpoint_every=2, resume=True, max_steps=whole.steps - 1))
    resumed = tune(str(tiny_model_dir), rows, out_dir=tmp_path / "parts", policies=["hate", "sexual"],
                   options=OPTIONS, progress=False, run=RunOptions(checkpoint_every=2, resume=True))
    assert not again.finished and resumed.finished and resumed.steps == whole.steps
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "parts")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_resuming_with_other_data_or_options_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = load_labeled([_data(tmp_path)])
    out = tmp_path / "run"
    tune(str(tiny_model_dir), rows, out_dir=out, policies=["hate"], options=OPTIONS, progress=False,
         run=RunOptions(max_steps=1))
    with pytest.raises(ConfigError, match="other data or options"):
        tune(str(tiny_model_dir), rows[:-2], out_dir=out, policies=["hate"], options=OPTIONS, progress=False,
             run=RunOptions(resume=True))
    with pytest.raises(ConfigError, match="no checkpoint"):
        tune(str(tiny_model_dir), rows, out_dir=tmp_path / "none", policies=["hate"], options=OPTIONS,
             progress=False, run=RunOptions(resume=True))


def test_cli_stops_and_resumes(tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, out = _data(tmp_path), tmp_path / "cli"
    base = ["tune", str(data), "--model", str(tiny_model_dir), "--out", str(out), "--policy", "hate",
            "--epochs", "1", "--rank", "2", "--dtype", "float32", "--quiet", "--checkpoint-every", "1"]
    assert main([*base, "--max-steps", "1"]) == 0
    assert "--resume" in capsys.readouterr().out and not (out / "guardrail_tune.json").exists()
    assert main([*base, "--resume"]) == 0
    assert "adapter:" in capsys.readouterr().out and (out / "guardrail_tune.json").exists()
    assert main([*base, "--max-tokens", "8"]) == 2
