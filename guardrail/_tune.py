"""LoRA-tune a causal LM into a ShieldGemma-style policy classifier (the "agile classifier" recipe).

Every labeled (example, policy) pair becomes the exact prompt the scorer renders for that stage,
with one BOS in front; the target is the next token, `Yes` (violates) or `No`. One adapter
serves every policy it was trained on: the guideline in the prompt says which one is asked.

>>> from guardrail._data import load_labeled
>>> rows = load_labeled(["train.jsonl"])                                   # doctest: +SKIP
>>> result = tune("path/to/base", rows, policies=["hate"], out_dir="lora",   # doctest: +SKIP
...               options=TuneOptions(epochs=8, learning_rate=5e-4))
>>> TransformersScorer.from_pretrained("path/to/base", adapter="lora")      # doctest: +SKIP

Heavy imports (torch, peft, transformers) happen inside the functions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrail._data import DataSummary, LabeledExample, LabeledPair, labeled_pairs, split_examples
from guardrail._exceptions import ConfigError
from guardrail._policies import Policy, resolve_policies
from guardrail._scoring import ScoreRequest
from guardrail._tune_checkpoint import Progress, fingerprint, load_checkpoint, save_checkpoint
from guardrail._tune_steps import Head, Row, encode_rows, plan_epoch, step_loss

__all__ = ["RunOptions", "TuneOptions", "TuneResult", "read_training_record", "tune", "write_model_card"]

_LOSSES = ("answer", "binary")
_SELECT = ("roc_auc", "loss")
_SCHEDULES = ("constant", "linear")


@dataclass(frozen=True, kw_only=True)
class TuneOptions:
    """Hyperparameters. The defaults are the measured best for Gemma 3 270M on 200 ETHOS rows.

    `loss="answer"`: cross-entropy of the answer token over the whole vocabulary;
    `loss="binary"`: cross-entropy over the two answer logits only (exactly what the scorer reads).
    `select_by` picks the saved checkpoint on the validation pairs; `patience` stops early after
    that many epochs without improvement. `init_adapter` starts from a saved adapter's weights
    (same rank and target modules) instead of a fresh LoRA: a run that goes on with new data.
    """

    epochs: int = 8
    learning_rate: float = 5e-4
    batch_size: int = 8
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    loss: str = "answer"
    schedule: str = "constant"
    weight_decay: float = 0.0
    val_fraction: float = 0.1
    select_by: str = "roc_auc"
    patience: int | None = None
    seed: int = 1234
    max_length: int = 1024
    dtype: str = "auto"
    init_adapter: str | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "rank", "alpha", "max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"tune option {name} must be a positive integer, got {value!r}")
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < 1):
            raise ConfigError(f"tune option learning_rate must be in (0, 1), got {self.learning_rate!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"tune option dropout must be in [0, 1), got {self.dropout!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"tune option val_fraction must be in [0, 1), got {self.val_fraction!r}")
        for name, allowed in (("loss", _LOSSES), ("select_by", _SELECT), ("schedule", _SCHEDULES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"tune option {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not self.target_modules or not all(isinstance(m, str) and m for m in self.target_modules):
            raise ConfigError(f"tune option target_modules must name modules, got {self.target_modules!r}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"tune option patience must be at least 1, got {self.patience!r}")
        object.__setattr__(self, "target_modules", tuple(self.target_modules))


@dataclass(frozen=True, kw_only=True)
class TuneResult:
    """Where the adapter went, which epoch was kept, and the validation history."""

    out_dir: Path
    best_epoch: int
    history: tuple[dict[str, Any], ...]
    validation: dict[str, Any] = field(default_factory=dict)
    train_pairs: int = 0
    val_pairs: int = 0
    seconds: float = 0.0
    finished: bool = True
    steps: int = 0


def _requests(pairs: Sequence[LabeledPair], policies: dict[str, Policy]) -> list[ScoreRequest]:
    return [ScoreRequest(turn=p.example.turn, guideline=policies[p.policy].guideline(p.stage), policy=p.policy)
            for p in pairs]


def _seed(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def _text_config(model: Any) -> Any:
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _validate(scorer: Any, pairs: list[LabeledPair], requests: list[ScoreRequest]) -> dict[str, Any]:
    from guardrail._evaluate import binary_metrics

    scores = scorer.score(requests) if requests else []
    labels = [p.label for p in pairs]
    eps = 1e-7
    loss = -sum(
        math.log(max(s, eps)) if y else math.log(max(1 - s, eps)) for s, y in zip(scores, labels)
    ) / max(len(labels), 1)
    groups: dict[str, tuple[list[float], list[int]]] = {}
    for pair, s in zip(pairs, scores):
        for key in (pair.policy, f"{pair.policy}/{pair.stage.value}"):
            groups.setdefault(key, ([], []))
            groups[key][0].append(s)
            groups[key][1].append(pair.label)
    pooled = binary_metrics(scores, labels, threshold=0.5).to_dict() if pairs else {}
    return {
        "loss": loss,
        "roc_auc": pooled.get("roc_auc"),
        "pooled": pooled,
        "groups": {k: binary_metrics(s, y, threshold=0.5).to_dict() for k, (s, y) in sorted(groups.items())},
    }


def _better(current: dict[str, Any], best: dict[str, Any] | None, select_by: str) -> bool:
    if best is None:
        return True
    if select_by == "roc_auc" and current["roc_auc"] is not None and best["roc_auc"] is not None:
        return current["roc_auc"] > best["roc_auc"]
    return current["loss"] < best["loss"]


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How a run is carried out; none of it changes what is learnt.

    `checkpoint_every` optimizer steps (and after every epoch) the state goes to
    `<out>/checkpoint/`; `resume` continues from there. `max_steps` stops the run after that many
    steps in all, checkpointed, to be resumed later. `max_tokens` bounds the padded tokens of one
    forward (a step's gradient is accumulated over several), and so peak memory.
    """

    checkpoint_every: int | None = 200
    resume: bool = False
    max_steps: int | None = None
    max_tokens: int = 4096

    def __post_init__(self) -> None:
        for name in ("checkpoint_every", "max_steps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"tune {name} must be a positive integer, got {value!r}")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 64:
            raise ConfigError(f"tune max_tokens must be an integer of at least 64, got {self.max_tokens!r}")


def tune(
    model: str,
    examples: Sequence[LabeledExample],
    *,
    out_dir: str | Path,
    policies: Sequence[Policy | str] | None = None,
    options: TuneOptions | None = None,
    validation: Sequence[LabeledExample] | None = None,
    data: DataSummary | None = None,
    progress: bool = True,
    run: RunOptions | None = None,
) -> TuneResult:
    """LoRA-tune `model` (a local directory, a hub id, or "embedded") and save the best adapter.

    Validation uses `validation` when given, else `options.val_fraction` of `examples`. With
    `run.resume`, the run goes on from `<out_dir>/checkpoint` (same data and options, same result
    as a run never stopped). A run stopped by `run.max_steps` returns `finished=False`.
    """
    options = options or TuneOptions()
    run = run or RunOptions()
    resolved = {p.name: p for p in resolve_policies(policies)}
    if validation is None:
        examples, validation = split_examples(examples, fraction=options.val_fraction, seed=options.seed)
    train_pairs = labeled_pairs(examples, list(resolved))
    val_pairs = labeled_pairs(validation, list(resolved))
    if not train_pairs:
        raise ConfigError(f"no training example has a label for any of: {', '.join(resolved)}")
    started = time.monotonic()
    _seed(options.seed)
    peft_model, scorer, base_path = _load(model, options)
    from guardrail._tokens import control_token_ids

    # Exactly the ids the scorer reads (one BOS; control tokens typed in content as plain text).
    rows, skipped = encode_rows(scorer.tokenizer, train_pairs, resolved, control_token_ids(scorer.tokenizer),
                                max_length=options.max_length)
    val_requests = _requests(val_pairs, resolved)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    print_ = fingerprint({**options_dict(options), "policies": sorted(resolved), "model": model}, rows)
    # The best adapter so far is saved after each improving epoch, so an interrupted run leaves
    # a usable adapter behind; the model card comes at the end.
    state, weights, finished = _train(peft_model, scorer, rows, val_pairs, val_requests, options, progress,
                                      run=run, out=out, print_=print_)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    if finished and state.best_weights is not None:
        weights = state.best_weights
    best_epoch = state.best["epoch"] if state.best else len(state.history)
    with _fp32_adapter(params, weights):
        peft_model.save_pretrained(str(out))
    result = TuneResult(
        out_dir=out, best_epoch=best_epoch, history=tuple(state.history),
        validation=state.best or {}, train_pairs=sum(r.pairs for r in rows), val_pairs=len(val_pairs),
        seconds=time.monotonic() - started, finished=finished, steps=state.steps_done,
    )
    if not finished:
        return result
    write_model_card(
        out, base=model, base_path=base_path, options=options, result=result, data=data,
        policies=list(resolved), train_examples=len(examples), val_examples=len(validation),
        skipped=skipped, counts=_counts(train_pairs), val_counts=_counts(val_pairs),
    )
    return result


def _counts(pairs: Sequence[LabeledPair]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for p in pairs:
        entry = counts.setdefault(f"{p.policy}/{p.stage.value}", {"positive": 0, "negative": 0})
        entry["positive" if p.label else "negative"] += 1
    return counts


def _load(model: str, options: TuneOptions) -> tuple[Any, Any, str]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from guardrail._transformers import TransformersScorer, _resolve_dtype

    path = model
    if model == "embedded":
        from guardrail._embedded import embedded_model_path

        path = str(embedded_model_path(progress=True))
    tokenizer = AutoTokenizer.from_pretrained(path)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=_resolve_dtype(options.dtype))
    config = LoraConfig(
        r=options.rank, lora_alpha=options.alpha, lora_dropout=options.dropout,
        target_modules=list(options.target_modules), bias="none", task_type="CAUSAL_LM",
    )
    try:
        with warnings.catch_warnings():
            # peft 0.21 calls a transformers 5 deprecated alias; nothing for us to change.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            peft_model = get_peft_model(base, config)
    except ValueError as exc:
        raise ConfigError(f"cannot apply LoRA to {model!r}: {exc}") from None
    if options.init_adapter is not None:
        _init_from(peft_model, Path(options.init_adapter), options)
    scorer = TransformersScorer(peft_model, tokenizer, batch_size=options.batch_size)
    return peft_model, scorer, path


def _init_from(peft_model: Any, adapter: Path, options: TuneOptions) -> None:
    """Copy a saved adapter's weights into the fresh LoRA; its shape must be this run's."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    try:
        saved = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
        weights = load_file(str(adapter / "adapter_model.safetensors"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"init_adapter {str(adapter)!r} is not a readable LoRA adapter: {exc}") from None
    theirs = (saved.get("r"), saved.get("lora_alpha"), sorted(saved.get("target_modules") or []))
    ours = (options.rank, options.alpha, sorted(options.target_modules))
    if theirs != ours:
        raise ConfigError(f"init_adapter {str(adapter)!r} has rank, alpha, modules {theirs}; this run has {ours}")
    result: Any = set_peft_model_state_dict(peft_model, weights)  # torch's _IncompatibleKeys
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise ConfigError(f"init_adapter {str(adapter)!r} does not fit the model: "
                          f"{len(missing)} missing, {len(result.unexpected_keys)} unexpected tensors")


def _compute_weights(params: list[Any]) -> list[Any]:
    """The weights the optimizer updates: fp32 masters when the adapter computes in bf16/fp16.

    The adapter runs in the base model's dtype (bf16 is about 20 % faster than peft's fp32
    adapter on this CPU); the optimizer keeps fp32 copies so small updates are not rounded away.
    """
    import torch

    base = next(iter(params)).dtype if params else torch.float32
    if base == torch.float32:
        return params
    return [p.detach().float().clone().requires_grad_(True) for p in params]


@contextmanager
def _fp32_adapter(params: list[Any], weights: list[Any]) -> Iterator[None]:
    """The model's adapter holds the fp32 weights for the duration (saving, state dicts)."""
    if weights is params:
        yield
        return
    kept = [p.data for p in params]
    for p, w in zip(params, weights):
        p.data = w.detach().clone()
    try:
        yield
    finally:
        for p, data in zip(params, kept):
            p.data = data


def _train(
    model: Any, scorer: Any, rows: list[Row], val_pairs: list[LabeledPair], val_requests: list[ScoreRequest],
    options: TuneOptions, progress: bool, *, run: RunOptions, out: Path, print_: str,
) -> tuple[Progress, list[Any], bool]:
    """Train; returns (the run's history and best weights, the final fp32 weights, finished)."""
    import torch
    from tqdm.auto import tqdm

    from guardrail._transformers import _decoder, cache_argument

    params = [p for p in model.parameters() if p.requires_grad]
    dtype = _resolve_base_dtype(model)
    for p in params:
        p.data = p.data.to(dtype)
    weights = _compute_weights(params)
    optimizer = torch.optim.AdamW(weights, lr=options.learning_rate, weight_decay=options.weight_decay)
    total = math.ceil(sum(r.pairs for r in rows) / options.batch_size) * options.epochs
    if options.schedule == "linear":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total))
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    checkpoints = out / "checkpoint"
    state = Progress(order_state=random.Random(options.seed).getstate())
    if run.resume:
        state = load_checkpoint(checkpoints, weights=weights, optimizer=optimizer, scheduler=scheduler, print_=print_)
        _push(params, weights)

    def checkpoint() -> None:
        save_checkpoint(checkpoints, progress=state, weights=weights, optimizer=optimizer, scheduler=scheduler,
                        print_=print_)
        with _fp32_adapter(params, weights):
            model.save_pretrained(str(checkpoints / "adapter"))

    decoder = _decoder(model)
    head = Head(weight=model.get_output_embeddings().weight, rows=None if options.loss == "answer" else
                [scorer.yes_id, scorer.no_id], softcap=getattr(_text_config(model), "final_logit_softcapping", None),
                pad_id=scorer.pad_id)
    targets = (scorer.yes_id, scorer.no_id) if options.loss == "answer" else (0, 1)
    cache_arg = cache_argument(decoder)
    while state.epoch <= options.epochs:
        order = random.Random()
        order.setstate(state.order_state)
        steps = plan_epoch(rows, options.batch_size, order)
        model.train()
        bar = tqdm(total=len(steps), initial=state.step, desc=f"epoch {state.epoch}/{options.epochs}",
                   disable=not progress, leave=False)
        for step in steps[state.step:]:
            if run.max_steps is not None and state.steps_done >= run.max_steps:
                bar.close()
                checkpoint()
                model.eval()
                return state, weights, False
            for w in (*params, *weights):
                w.grad = None
            loss = step_loss(model, decoder, cache_arg, head, rows, step, targets=targets, max_tokens=run.max_tokens)
            if weights is not params:
                for p, w in zip(params, weights):
                    w.grad = p.grad.float()
            optimizer.step()
            scheduler.step()
            _push(params, weights)
            state.epoch_losses.append(loss)
            state.step += 1
            state.steps_done += 1
            bar.update()
            bar.set_postfix(loss=f"{sum(state.epoch_losses[-10:]) / len(state.epoch_losses[-10:]):.4f}")
            if run.checkpoint_every and state.steps_done % run.checkpoint_every == 0:
                checkpoint()
        bar.close()
        record: dict[str, Any] = {"epoch": state.epoch, "train_loss": sum(state.epoch_losses) / len(state.epoch_losses)}
        if val_pairs:
            model.eval()
            record.update(_validate(scorer, val_pairs, val_requests))
            if _better(record, state.best, options.select_by):
                state.best, state.stale = record, 0
                state.best_weights = [w.detach().clone() for w in weights]
                with _fp32_adapter(params, weights):
                    model.save_pretrained(str(out))
            else:
                state.stale += 1
        state.history.append(record)
        if progress:
            auc = record.get("roc_auc")
            shown = f", val loss {record['loss']:.4f}, val ROC-AUC {auc:.4f}" if val_pairs and auc is not None else ""
            print(f"epoch {state.epoch}: train loss {record['train_loss']:.4f}{shown}", flush=True)
        state.epoch, state.step, state.epoch_losses = state.epoch + 1, 0, []
        state.order_state = order.getstate()
        if options.patience is not None and state.stale >= options.patience:
            break
        if run.checkpoint_every:
            checkpoint()
    model.eval()
    return state, weights, True


def _push(params: list[Any], weights: list[Any]) -> None:
    import torch

    if weights is not params:
        with torch.no_grad():
            for p, w in zip(params, weights):
                p.copy_(w)


def _resolve_base_dtype(model: Any) -> Any:
    """The dtype of the frozen base weights (the adapter computes in it)."""
    return next(p.dtype for p in model.parameters() if not p.requires_grad)


def options_dict(options: TuneOptions) -> dict[str, Any]:
    data = dataclasses.asdict(options)
    data["target_modules"] = list(options.target_modules)
    return data


def read_training_record(adapter_dir: str | Path) -> dict[str, Any]:
    """The machine-readable record `tune` writes beside the adapter."""
    return json.loads((Path(adapter_dir) / "guardrail_tune.json").read_text(encoding="utf-8"))


def _table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def write_model_card(
    out: Path, *, base: str, base_path: str, options: TuneOptions, result: TuneResult,
    data: DataSummary | None, policies: list[str], train_examples: int, val_examples: int,
    skipped: int, counts: dict[str, dict[str, int]], val_counts: dict[str, dict[str, int]],
) -> None:
    """README.md (the model card) and guardrail_tune.json beside the adapter weights."""
    record = {
        "base_model": base, "base_path": base_path, "policies": policies,
        "options": options_dict(options), "data": data.to_dict() if data else None,
        "train_examples": train_examples, "val_examples": val_examples,
        "train_pairs": result.train_pairs, "val_pairs": result.val_pairs, "skipped_too_long": skipped,
        "train_counts": counts, "val_counts": val_counts, "best_epoch": result.best_epoch,
        "seconds": round(result.seconds, 1), "history": list(result.history),
    }
    (out / "guardrail_tune.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    groups = result.validation.get("groups", {})
    metric_rows = [["policy/stage", "n", "positives", "ROC-AUC", "AU-PRC", "best F1", "at threshold", "F1 at 0.5"]]
    for key, m in groups.items():
        metric_rows.append([key, str(m["n"]), str(m["positives"]), _fmt(m["roc_auc"]), _fmt(m["au_prc"]),
                            _fmt(m["best_f1"]), _fmt(m["best_threshold"]), _fmt(m["f1"])])
    count_rows = [["policy/stage", "train +", "train -", "val +", "val -"]]
    for key in sorted(set(counts) | set(val_counts)):
        c, v = counts.get(key, {}), val_counts.get(key, {})
        count_rows.append([key, str(c.get("positive", 0)), str(c.get("negative", 0)),
                           str(v.get("positive", 0)), str(v.get("negative", 0))])
    epoch_rows = [["epoch", "train loss", "val loss", "val ROC-AUC"]]
    for h in result.history:
        epoch_rows.append([str(h["epoch"]), _fmt(h["train_loss"]), _fmt(h.get("loss")), _fmt(h.get("roc_auc"))])
    data_text = "(not recorded)"
    if data:
        data_text = "\n".join(f"- `{f}`" for f in data.files) + f"\n\nsha256 `{data.sha256}`, {data.rows} rows."
    hyper = "\n".join(f"- {k}: `{v}`" for k, v in options_dict(options).items())
    card = f"""---
library_name: peft
base_model: {base}
tags: [guardrail, shieldgemma, lora, safety-classifier]
---

# guardrail policy classifier (LoRA adapter)

A LoRA adapter that turns `{base}` into a ShieldGemma-style classifier: P(Yes) for the exact
ShieldGemma prompt (input and output stages) of the policies {", ".join(f"`{p}`" for p in policies)}.

```toml
[model]
name = "{base}"
adapter = "{out}"
```

## Data

{data_text}

{train_examples} training rows, {val_examples} validation rows; {result.train_pairs} training pairs
(example x labeled policy), {result.val_pairs} validation pairs, {skipped} dropped as longer than
{options.max_length} tokens.

{_table(count_rows)}

## Hyperparameters

{hyper}

## Training

{_table(epoch_rows)}

Kept epoch {result.best_epoch} (by validation {options.select_by}); {result.seconds / 60:.1f} minutes.

## Validation metrics (kept epoch)

{_table(metric_rows) if len(metric_rows) > 1 else "(no validation data)"}
"""
    (out / "README.md").write_text(card, encoding="utf-8")
