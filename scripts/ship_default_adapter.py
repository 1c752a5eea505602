"""Calibrate and evaluate a trained embedded adapter on held-out rows, and write what ships with it.

    GUARDRAIL_CACHE_DIR=/tmp/gcache python scripts/heldout_default_adapter.py --out /tmp/heldout
    GUARDRAIL_CACHE_DIR=/tmp/gcache python scripts/ship_default_adapter.py \
        --adapter guardrail/adapters/embedded-v1 --heldout /tmp/heldout --report /tmp/heldout/eval

1. `calibrate.jsonl`: each policy's threshold for best F1 (pooled over both stages), written to
   `<adapter>/thresholds.json`, which `Guard()` reads for the embedded default;
2. `evaluate.jsonl` (never used for training or calibration): `guardrail eval` at those
   thresholds; the JSON report and plots go to `--report`, and the table replaces the
   "Held-out evaluation" section of `<adapter>/README.md`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from guardrail import BUILTIN_POLICIES, Guard
from guardrail import TransformersScorer
from guardrail.classifier import calibrate, dataset_hash, evaluate, load_labeled, write_report

POLICIES = ("dangerous", "harassment", "hate", "sexual")
SECTION = "## Held-out evaluation of the shipped adapter and thresholds"
HEADER = """---
library_name: peft
base_model: google/gemma-3-270m
tags: [guardrail, shieldgemma, lora, safety-classifier]
---

# guardrail policy classifier (LoRA adapter)

A LoRA adapter that turns the embedded Gemma 3 270M base (`google/gemma-3-270m`, from the PyPI
GGUF) into a ShieldGemma-style classifier: P(Yes) for the exact ShieldGemma prompt (input and
output stages) of the policies `dangerous`, `harassment`, `hate`, `sexual`.

This is the embedded default: `Guard()` and `[model] name = "embedded"` load it, with the
thresholds in `thresholds.json`. Use `adapter = "none"` for the bare base model.

Reproduce (reads `../shared/data` at run time, never copied into the repository):

```bash
export GUARDRAIL_CACHE_DIR=~/.cache/guardrail
nice python scripts/train_default_adapter.py --out guardrail/adapters/embedded-v1 --scale 0.6 --epochs 3
python scripts/heldout_default_adapter.py --out /tmp/heldout       # rows never trained on
python scripts/ship_default_adapter.py --adapter guardrail/adapters/embedded-v1 --heldout /tmp/heldout
```

"""


def portable(adapter: Path, repo: Path) -> None:
    """Machine paths out of what ships: the base model's name, data paths relative to the repository."""
    shared = str(repo.parent / "shared")
    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = "google/gemma-3-270m"
    (adapter / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    for name in ("guardrail_tune.json", "README.md"):
        text = (adapter / name).read_text(encoding="utf-8")
        text = text.replace(shared, "../shared").replace(str(repo) + "/", "")
        if name == "guardrail_tune.json":
            record = json.loads(text)
            record["base_path"] = "google/gemma-3-270m (the embedded GGUF, converted)"
            text = json.dumps(record, indent=2) + "\n"
        else:
            text = HEADER + text[text.index("## Data"):]
        (adapter / name).write_text(text, encoding="utf-8")


def _table(report, thresholds: dict[str, float]) -> str:  # noqa: ANN001
    lines = ["| group | n | positives | ROC-AUC | AU-PRC | best F1 | F1 at the shipped threshold |",
             "|---|---|---|---|---|---|---|"]
    for key, m in report.groups.items():
        cells = [f"{v:.3f}" if v is not None else "n/a" for v in (m.roc_auc, m.au_prc, m.best_f1)]
        lines.append(f"| {key} | {m.n} | {m.positives} | {' | '.join(cells)} | {m.f1:.3f} |")
    shipped = ", ".join(f"{k} {v:.3f}" for k, v in thresholds.items())
    return "\n".join(lines) + f"\n\nThresholds: {shipped}.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, required=True)
    parser.add_argument("--heldout", type=Path, default=Path("/tmp/heldout"))
    parser.add_argument("--report", type=Path, default=Path("/tmp/heldout/eval"))
    args = parser.parse_args()
    from guardrail.classifier import embedded_model_path

    scorer = TransformersScorer.from_pretrained(str(embedded_model_path()), dtype="bfloat16", adapter=str(args.adapter))
    fit_path, eval_path = args.heldout / "calibrate.jsonl", args.heldout / "evaluate.jsonl"
    fit_rows = load_labeled([fit_path])
    found = calibrate(Guard(list(POLICIES), scorer=scorer), fit_rows, progress=True)
    summary = dataset_hash([fit_path])
    thresholds = {name: round(c.threshold, 6) for name, c in found.items()}
    (args.adapter / "thresholds.json").write_text(json.dumps({
        "fitted_on": {
            "data": "scripts/heldout_default_adapter.py calibrate half (rows the training never saw)",
            "rows": summary.rows, "sha256": summary.sha256[:16], "goal": "best F1, pooled over both stages",
        },
        "policies": {name: {
            "threshold": thresholds[name],
            "fit": f"f1 on {c.n} pairs ({c.positives} positive) from {summary.rows} rows; precision "
                   f"{c.precision:.3f} recall {c.recall:.3f} f1 {c.f1:.3f} fpr {c.fpr if c.fpr is None else round(c.fpr, 3)}",
        } for name, c in found.items()},
    }, indent=2) + "\n", encoding="utf-8")
    guard = Guard([BUILTIN_POLICIES[name].with_threshold(thresholds[name]) for name in POLICIES], scorer=scorer)
    eval_rows = load_labeled([eval_path])
    report = evaluate(guard, eval_rows, progress=True)
    write_report(report, args.report)
    table = _table(report, thresholds)
    print(table)
    portable(args.adapter, Path(__file__).resolve().parent.parent)
    card = args.adapter / "README.md"
    text = card.read_text(encoding="utf-8").split(SECTION)[0].rstrip()
    card.write_text(
        f"{text}\n\n{SECTION}\n\nThresholds (`thresholds.json`) were fitted for best F1 on the calibration half "
        f"({summary.rows} rows) of `scripts/heldout_default_adapter.py`; the evaluation half ({len(eval_rows)} "
        f"rows) was never used for training or calibration. `guardrail eval` at the shipped thresholds, bf16:\n\n"
        f"{table}",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
