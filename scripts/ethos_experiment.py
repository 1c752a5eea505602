"""The agile-classifier seed experiment on the embedded Gemma 3 270M: ETHOS, 200 training rows.

Protocol (Google's agile classifiers tutorial): the 998 rows of Ethos_Dataset_Binary.csv shuffled
with pandas `sample(frac=1, random_state=32)` (= numpy `RandomState(32).permutation(998)`),
train = the first rows, test = rows 800: (198). The tutorial labels hateful = isHate >= median
(0.333, 515 positives); `--label half` uses isHate >= 0.5 (ethos.jsonl's label, 433 positives).
Target to beat (Gemma 2B, 200 rows): F1 0.80 / ROC-AUC 0.78; F1 is at P(Yes) >= 0.5 (argmax).

The classifier is the `hate` built-in policy, input stage, scored exactly as `TransformersScorer`
does. Checkpoint selection uses `--val` rows taken from the shuffled rows 200:800 (never the
test rows); `--val 0` keeps the last epoch.

    GUARDRAIL_CACHE_DIR=/tmp/gcache nice -n 10 python scripts/ethos_experiment.py \
        --out /tmp/ethos_runs/base --epochs 8 --lr 5e-4 --results /tmp/ethos_runs/results.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from guardrail import BUILTIN_POLICIES, ScoreRequest, Stage
from guardrail.classifier import LabeledExample, TuneOptions, binary_metrics, tune

DATA = Path("/work/shared/data/ethos/ethos.jsonl")


def load(path: Path, label: str) -> list[LabeledExample]:
    import numpy as np

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    rows.sort(key=lambda r: int(r["id"].split("_")[1]))
    scores = [r["meta"]["isHate_score"] for r in rows]
    cut = float(np.median(scores)) if label == "median" else 0.5
    order = np.random.RandomState(32).permutation(len(rows))
    return [
        LabeledExample(id=rows[i]["id"], prompt=rows[i]["prompt"], labels={"hate": int(scores[i] >= cut)})
        for i in order
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, required=True, help="adapter output directory")
    parser.add_argument("--results", type=Path, help="append one JSON line of results here")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--val", type=int, default=100, help="validation rows from 200:800 for checkpoint choice")
    parser.add_argument("--label", choices=["median", "half"], default="median")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=int, default=16)
    parser.add_argument("--targets", default="q_proj,v_proj")
    parser.add_argument("--loss", choices=["answer", "binary"], default="answer")
    parser.add_argument("--schedule", choices=["constant", "linear"], default="constant")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--note", default="")
    parser.add_argument("--score-only", action="store_true", help="reuse the adapter in --out, only measure")
    args = parser.parse_args(argv)

    rows = load(args.data, args.label)
    train, test = rows[: args.train], rows[800:]
    val = rows[800 - args.val : 800] if args.val else []
    options = TuneOptions(
        epochs=args.epochs, learning_rate=args.lr, rank=args.rank, alpha=args.alpha,
        target_modules=tuple(args.targets.split(",")), loss=args.loss, schedule=args.schedule,
        batch_size=args.batch_size, seed=args.seed, val_fraction=0.0,
    )
    started = time.monotonic()
    result = None
    if not args.score_only:
        result = tune(args.model, train, out_dir=args.out, policies=["hate"], options=options, validation=val)
    train_s = time.monotonic() - started

    from guardrail import TransformersScorer
    from guardrail.classifier import embedded_model_path

    base = str(embedded_model_path()) if args.model == "embedded" else args.model
    scorer = TransformersScorer.from_pretrained(base, dtype="bfloat16", adapter=str(args.out))
    guideline = BUILTIN_POLICIES["hate"].guideline(Stage.INPUT)
    scores = scorer.score([ScoreRequest(turn=ex.turn, guideline=guideline) for ex in test])
    labels = [ex.labels["hate"] for ex in test]
    metrics = binary_metrics(scores, labels, threshold=0.5).to_dict()
    if val:  # the threshold `guardrail calibrate` would pick on the validation rows, applied to test
        from guardrail.classifier import pick_threshold

        val_scores = scorer.score([ScoreRequest(turn=ex.turn, guideline=guideline) for ex in val])
        fitted = pick_threshold(val_scores, [ex.labels["hate"] for ex in val], goal="f1")
        at = binary_metrics(scores, labels, threshold=fitted.threshold)
        metrics["val_calibrated"] = {"threshold": fitted.threshold, "f1": at.f1, "precision": at.precision,
                                     "recall": at.recall}
    record = {
        "note": args.note, "label": args.label, "train": args.train, "val": args.val,
        "options": {k: v for k, v in vars(args).items() if k not in ("data", "out", "results", "note")},
        "best_epoch": result.best_epoch if result else None, "train_seconds": round(train_s, 1),
        "val_history": [{k: h.get(k) for k in ("epoch", "train_loss", "loss", "roc_auc")}
                        for h in (result.history if result else ())],
        "test": metrics, "adapter": str(args.out),
    }
    print(json.dumps(record["test"], indent=2))
    print(f"test: F1@0.5 {metrics['f1']:.3f}  ROC-AUC {metrics['roc_auc']:.3f}  best F1 {metrics['best_f1']:.3f} "
          f"(target 0.80 / 0.78); val-calibrated F1 {metrics.get('val_calibrated', {}).get('f1')}; "
          f"kept epoch {result.best_epoch if result else '-'}; {train_s / 60:.1f} min")
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with args.results.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
