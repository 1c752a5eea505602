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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrail._data import DataSummary, LabeledExample, LabeledPair, labeled_pairs, split_examples
from guardrail._exceptions import ConfigError
from guardrail._policies import Policy, resolve_policies
from guardrail._scoring import ScoreRequest

__all__ = ["TuneOptions", "TuneResult", "read_training_record", "tune", "write_model_card"]

_LOSSES = ("answer", "binary")
_SELECT = ("roc_auc", "loss")
_SCHEDULES = ("constant", "linear")


@dataclass(frozen=True, kw_only=True)
class TuneOptions:
    """Hyperparameters. The defaults are the measured best for Gemma 3 270M on 200 ETHOS rows.

    `loss="answer"`: cross-entropy of the answer token over the whole vocabulary;
    `loss="binary"`: cross-entropy over the two answer logits only (exactly what the scorer reads).
    `select_by` picks the saved checkpoint on the validation pairs; `patience` stops early after
    that many epochs without improvement.
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
    dtype: str = "bfloat16"

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


def _requests(pairs: Sequence[LabeledPair], policies: dict[str, Policy]) -> list[ScoreRequest]:
    return [ScoreRequest(turn=p.example.turn, guideline=policies[p.policy].guideline(p.stage), policy=p.policy)
            for p in pairs]


def _seed(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def _answer_logits(model: Any, scorer: Any, input_ids: Any, mask: Any, *, full_vocab: bool) -> Any:
    """Next-token logits at the last real position: the whole vocabulary, or [Yes, No] only."""
    import torch

    from guardrail._transformers import _decoder

    device = model.get_input_embeddings().weight.device
    hidden = _decoder(model)(
        input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False
    ).last_hidden_state
    last = (mask.sum(-1) - 1).to(hidden.device)
    final = hidden[torch.arange(len(last), device=hidden.device), last]
    head = model.get_output_embeddings().weight
    rows = head if full_vocab else head[[scorer.yes_id, scorer.no_id]]
    softcap = getattr(_text_config(model), "final_logit_softcapping", None)
    logits = (final.to(head.dtype) @ rows.T).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def _text_config(model: Any) -> Any:
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _loss(model: Any, scorer: Any, batch: list[tuple[list[int], int]], options: TuneOptions) -> Any:
    import torch

    pad_id = scorer.tokenizer.pad_token_id if scorer.tokenizer.pad_token_id is not None else 0
    from guardrail._transformers import padded

    input_ids, mask = padded([ids for ids, _ in batch], pad_id)
    labels = torch.tensor([label for _, label in batch])
    if options.loss == "answer":
        logits = _answer_logits(model, scorer, input_ids, mask, full_vocab=True)
        targets = torch.where(labels == 1, scorer.yes_id, scorer.no_id)
    else:
        logits = _answer_logits(model, scorer, input_ids, mask, full_vocab=False)
        targets = 1 - labels  # column 0 is Yes
    return torch.nn.functional.cross_entropy(logits, targets.to(logits.device))


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
) -> TuneResult:
    """LoRA-tune `model` (a local directory, a hub id, or "embedded") and save the best adapter.

    Validation uses `validation` when given, else `options.val_fraction` of `examples`.
    """
    options = options or TuneOptions()
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
    from guardrail._tokens import control_token_ids, encode_request

    controls = control_token_ids(scorer.tokenizer)
    # Exactly the ids the scorer reads (one BOS; control tokens typed in content as plain text).
    encoded = [encode_request(scorer.tokenizer, r, controls) for r in _requests(train_pairs, resolved)]
    items = [(ids, p.label) for ids, p in zip(encoded, train_pairs) if len(ids) <= options.max_length]
    skipped = len(train_pairs) - len(items)
    val_requests = _requests(val_pairs, resolved)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The best adapter so far is saved after each improving epoch, so an interrupted run leaves
    # a usable adapter behind; the model card comes at the end.
    history, best, best_state = _train(
        peft_model, scorer, items, val_pairs, val_requests, options, progress,
        save=lambda: peft_model.save_pretrained(str(out)),
    )
    if best_state is not None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(peft_model, best_state)
    best_epoch = best["epoch"] if best else len(history)
    peft_model.save_pretrained(str(out))
    result = TuneResult(
        out_dir=out, best_epoch=best_epoch, history=tuple(history),
        validation=best or {}, train_pairs=len(items), val_pairs=len(val_pairs),
        seconds=time.monotonic() - started,
    )
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
    scorer = TransformersScorer(peft_model, tokenizer, batch_size=options.batch_size)
    return peft_model, scorer, path


def _length_grouped(items: list[tuple[list[int], int]], size: int, rng: random.Random) -> list[list[tuple[list[int], int]]]:
    """Shuffled batches of similar lengths: shuffle, sort within windows of 16 batches, shuffle batches.

    On CPU the padding of one long prompt in a batch costs more than anything else.
    """
    shuffled = items[:]
    rng.shuffle(shuffled)
    window = size * 16
    batches = []
    for start in range(0, len(shuffled), window):
        chunk = sorted(shuffled[start : start + window], key=lambda item: len(item[0]))
        batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
    rng.shuffle(batches)
    return batches


def _train(
    model: Any, scorer: Any, items: list[tuple[list[int], int]], val_pairs: list[LabeledPair],
    val_requests: list[ScoreRequest], options: TuneOptions, progress: bool, save: Callable[[], None],
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, dict[str, Any] | None]:
    import torch
    from peft import get_peft_model_state_dict
    from tqdm.auto import tqdm

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=options.learning_rate, weight_decay=options.weight_decay)
    steps_per_epoch = math.ceil(len(items) / options.batch_size)
    total = steps_per_epoch * options.epochs
    if options.schedule == "linear":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total))
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    order = random.Random(options.seed)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    best_state: dict[str, Any] | None = None
    stale = 0
    for epoch in range(1, options.epochs + 1):
        model.train()
        batches = _length_grouped(items, options.batch_size, order)
        losses = []
        bar = tqdm(batches, desc=f"epoch {epoch}/{options.epochs}", disable=not progress, leave=False)
        for batch in bar:
            loss = _loss(model, scorer, batch, options)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.4f}")
        bar.close()
        record: dict[str, Any] = {"epoch": epoch, "train_loss": sum(losses) / len(losses)}
        if val_pairs:
            model.eval()
            record.update(_validate(scorer, val_pairs, val_requests))
            if _better(record, best, options.select_by):
                best, stale = record, 0
                best_state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
                save()
            else:
                stale += 1
        history.append(record)
        if progress:
            auc = record.get("roc_auc")
            shown = f", val loss {record['loss']:.4f}, val ROC-AUC {auc:.4f}" if val_pairs and auc is not None else ""
            print(f"epoch {epoch}: train loss {record['train_loss']:.4f}{shown}", flush=True)
        if options.patience is not None and stale >= options.patience:
            break
    model.eval()
    return history, best, best_state


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
