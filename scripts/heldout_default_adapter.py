"""Held-out data for the shipped adapter: rows its training never saw, split for calibration and evaluation.

    GUARDRAIL_CACHE_DIR=/tmp/gcache python scripts/heldout_default_adapter.py --out /tmp/heldout

Sources (read at run time, never copied into the repository):
- ETHOS's tutorial test rows (shuffled 800:), which `train_default_adapter.py` leaves out;
- `davidson` (hate, harassment), which the training does not read at all;
- rows of `diasafety`, `hatexplain`, `toxigen`, `coconot` and `dolly_openqa` that the training
  selection (same seed and scale) did not pick;
- the fifth of `catqa` that the training holds out (`catqa_heldout`): dangerous and sexual requests;
- `scripts/data/heldout.jsonl`: hand-written examples, never trained on.
Rows are split by a hash of their id: even → `calibrate.jsonl`, odd → `evaluate.jsonl`.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import random
from pathlib import Path

HERE = Path(__file__).parent
SHARED = Path("/work/shared/data")


def _training_module():  # noqa: ANN202 - the sibling script, loaded by path
    spec = importlib.util.spec_from_file_location("train_default_adapter", HERE / "train_default_adapter.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def _row(r: dict, labels: dict[str, int], **changes: object) -> dict:
    return {"id": r["id"], "prompt": r["prompt"], "response": r.get("response"), "labels": labels, **changes}


def build(seed: int, scale: float, per_group: int) -> list[dict]:
    train = _training_module()
    train.SCALE[0] = scale
    used = {e.id for e in train.build(seed)[0]}
    rng = random.Random(seed + 1)
    pick = lambda rows, n: rng.sample(rows, min(n, len(rows)))  # noqa: E731
    out: list[dict] = []
    ethos = sorted(_rows(SHARED / "ethos" / "ethos.jsonl"), key=lambda r: int(r["id"].split("_")[1]))
    import numpy as np

    order = np.random.RandomState(32).permutation(len(ethos))
    out += [_row(ethos[i], {"hate": ethos[i]["labels"]["hate"]}) for i in order[800:]]
    davidson = _rows(SHARED / "train" / "davidson" / "davidson.jsonl")
    out += [_row(r, {"hate": 1}) for r in pick([r for r in davidson if r["labels"].get("hate") == 1], per_group)]
    out += [_row(r, dict(r["labels"])) for r in pick([r for r in davidson if r["labels"].get("hate") == 0 and "harassment" in r["labels"]], per_group)]
    unused = {name: [r for r in _rows(SHARED / "train" / name / f"{name}.jsonl") if r["id"] not in used]
              for name in ("diasafety", "hatexplain", "toxigen", "coconot", "dolly_openqa")}
    for policy in ("hate", "harassment"):
        for value in (1, 0):
            out += [_row(r, {policy: value}) for r in pick([r for r in unused["diasafety"] if r["labels"].get(policy) == value], per_group)]
    # Insults aimed at the listener, as user input (the training builds some the same way).
    out += [_row(r, {"harassment": 1}, prompt=r["response"], response=None)
            for r in pick([r for r in unused["diasafety"] if r["labels"].get("harassment") == 1], per_group // 2)]
    out += [_row(r, {"hate": 1}) for r in pick([r for r in unused["hatexplain"] if r["labels"].get("hate") == 1], per_group // 2)]
    out += [_row(r, dict(r["labels"])) for r in pick([r for r in unused["toxigen"] if r["labels"].get("hate") == 0], per_group // 2)]
    out += [_row(r, dict(r["labels"])) for r in pick([r for r in unused["coconot"] if r["response"] is None], per_group)]
    out += [_row(r, dict(r["labels"])) for r in pick([r for r in unused["coconot"] if r["response"] is not None], per_group)]
    out += [_row(r, dict(r["labels"])) for r in pick(unused["dolly_openqa"], per_group // 2)]
    out += [_row(r, train.catqa_labels(r)) for r in _rows(SHARED / "train" / "catqa" / "catqa.jsonl")
            if train.catqa_heldout(r) and train.catqa_labels(r)]
    out += _rows(HERE / "data" / "heldout.jsonl")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/heldout"))
    parser.add_argument("--seed", type=int, default=20240611, help="the training script's seed")
    parser.add_argument("--scale", type=float, default=0.6, help="the training script's --scale")
    parser.add_argument("--per-group", type=int, default=60)
    args = parser.parse_args()
    rows = build(args.seed, args.scale, args.per_group)
    args.out.mkdir(parents=True, exist_ok=True)
    halves: dict[str, list[dict]] = {"calibrate": [], "evaluate": []}
    for r in rows:
        half = "calibrate" if hashlib.sha256(r["id"].encode()).digest()[0] % 2 == 0 else "evaluate"
        halves[half].append(r)
    for name, part in halves.items():
        with (args.out / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
        print(f"{args.out / name}.jsonl: {len(part)} rows")


if __name__ == "__main__":
    main()
