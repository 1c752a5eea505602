"""Evaluate a guard on the held-out split and the hand-written lists; fit thresholds on calibration.

    # baseline: the shipped embedded guard (adapter embedded-v1 and its thresholds)
    GUARDRAIL_CACHE_DIR=~/.cache/guardrail nice -n 5 python scripts/evaluate_adapter.py \
        --heldout /tmp/mix/heldout.jsonl --limit 600 --out /tmp/eval-baseline
    # a new adapter: thresholds fitted on calibration (FPR <= 5 %, 95 % bootstrap interval),
    # written to thresholds.json, and the held-out split and lists measured at them too
    python scripts/evaluate_adapter.py --adapter runs/a --calibration /tmp/mix/calibration.jsonl \
        --heldout /tmp/mix/heldout.jsonl --out /tmp/eval-a --thresholds-out runs/a/thresholds.json

Writes `report.md` and `report.json` to `--out`, and the scores (`scores-<name>.jsonl`), which a
rerun with the same `--out` reuses: an interrupted run continues where it stopped, and new
thresholds cost no scoring. `--limit` takes a stratified subset (source/kind x stage x label).

Per policy and stage (and "any": max over a row's labelled policies): n, positives, ROC-AUC,
AU-PRC, recall at 5 % FPR (its threshold chosen on these held-out negatives, so an optimistic
ceiling), and recall / FPR / precision at the guard's thresholds. The lists: the share of
`must_block.jsonl` blocked by any policy, and of `over_blocking.jsonl` (everyday requests).

Threshold goal: the highest recall with FPR <= 5 % on calibration negatives. Unlike best F1 it
does not depend on the share of positives in the calibration split, which our sampler sets.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adapter_metrics import Fit, choose_thresholds, fit_thresholds, group_metrics, list_figures, pairs_by_group  # noqa: E402

from guardrail import Guard, ScorerError, builtin_policy  # noqa: E402
from guardrail.classifier import LabeledExample  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
POLICIES = ("dangerous", "harassment", "hate", "sexual")
_WORD = re.compile(r"[a-z0-9]+")
CHUNK = 8  # rows per cache flush


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def stratified(rows: Sequence[dict], limit: int | None, *, seed: int) -> list[dict]:
    """At most `limit` rows, taking strata (source/kind, stage, any positive) in turn."""
    if limit is None or limit >= len(rows):
        return list(rows)
    strata: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        kind = (r.get("meta") or {}).get("kind", "")
        strata[(r.get("source", ""), kind, r.get("response") is not None, any(r["labels"].values()))].append(r)
    rng = random.Random(seed)
    queues = []
    for key in sorted(strata):
        items = list(strata[key])
        rng.shuffle(items)
        queues.append(items[::-1])
    out: list[dict] = []
    while len(out) < limit:
        out.extend(q.pop() for q in queues if q)
        queues = [q for q in queues if q]
    return sorted(out[:limit], key=lambda r: r["id"])


def with_every_positive(rows: Sequence[dict], negatives: int | None, *, seed: int,
                        per_cell: int | None = None) -> list[dict]:
    """Every row with a positive label, and `negatives` of the rest (stratified): thresholds of the
    thin policies need all their calibration positives; the FPR needs only enough negatives.

    With `per_cell`, positives are capped instead: rows are drawn (shuffled by `seed`) until each
    policy and stage holds `per_cell` positives or has none left, counting rows already drawn for
    another cell. That keeps every thin cell whole and samples the thick ones.
    """
    if negatives is None:
        return list(rows)
    positive = [r for r in rows if any(r["labels"].values())]
    if per_cell is not None:
        positive = _capped_positives(positive, per_cell, seed=seed)
    rest = stratified([r for r in rows if not any(r["labels"].values())], negatives, seed=seed)
    return sorted(positive + rest, key=lambda r: r["id"])


def _cells(row: Mapping) -> list[str]:
    stage = "output" if row.get("response") is not None else "input"
    return [f"{policy}/{stage}" for policy, label in row["labels"].items() if label]


def _capped_positives(rows: Sequence[dict], per_cell: int, *, seed: int) -> list[dict]:
    order = list(rows)
    random.Random(seed).shuffle(order)
    counts: Counter[str] = Counter()
    chosen: dict[int, dict] = {}
    for cell in sorted({c for r in order for c in _cells(r)}):
        for r in order:
            if counts[cell] >= per_cell:
                break
            if cell in _cells(r) and id(r) not in chosen:
                chosen[id(r)] = r
                counts.update(_cells(r))
    return list(chosen.values())


def _texts(row: Mapping, min_tokens: int) -> set[str]:
    texts = (row["prompt"], row.get("response") or "")
    return {" ".join(t) for t in (_WORD.findall(x.lower()) for x in texts) if len(t) >= min_tokens}


def exclude(rows: Sequence[dict], others: Sequence[dict], *, min_tokens: int = 6) -> list[dict]:
    """`rows` without those sharing a prompt or response (normalised, >= `min_tokens` words) with `others`.

    For a baseline: drop held-out rows an existing adapter was trained on. Short texts (neutral
    prompts such as "What do you think?") are not compared.
    """
    seen = set().union(*(_texts(o, min_tokens) for o in others)) if others else set()
    return [r for r in rows if not _texts(r, min_tokens) & seen]


def _key(row: Mapping) -> str:
    text = json.dumps([row["prompt"], row.get("response"), row["labels"]], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _scored(row: Mapping, verdict) -> dict:  # noqa: ANN001 - a guardrail Verdict
    failed = [d for d in verdict.decisions if d.error is not None]
    if failed:  # a fail-closed block is not a measurement
        raise ScorerError(f"row {row['id']!r}: no score for {failed[0].policy!r}: {failed[0].error}")
    return {
        "id": row["id"], "key": _key(row), "source": row.get("source", ""), "category": row.get("category"),
        "kind": (row.get("meta") or {}).get("kind"), "prompt": row["prompt"],
        "stage": "output" if row.get("response") is not None else "input", "labels": row["labels"],
        "scores": {d.policy: d.score for d in verdict.decisions},
    }


async def _check(guard: Guard, rows: Sequence[dict]) -> list:
    examples = [LabeledExample(id=r["id"], prompt=r["prompt"], response=r.get("response"), labels=r["labels"]) for r in rows]
    return await asyncio.gather(*(guard.acheck(e.messages(), e.stage) for e in examples))


def score_rows(guard: Guard, rows: Sequence[dict], cache: Path, *, progress: bool = False) -> list[dict]:
    """Scores per row from `cache` where it holds them, the rest checked now and appended to it."""
    done = {s["id"]: s for s in read_rows(cache)} if cache.exists() else {}
    todo = [r for r in rows if r["id"] not in done or done[r["id"]]["key"] != _key(r)]
    if todo:
        cache.parent.mkdir(parents=True, exist_ok=True)
        asyncio.run(_score_into(guard, todo, cache, done, progress=progress))  # one loop: batching is per loop
    return [done[r["id"]] for r in rows]


async def _score_into(guard: Guard, todo: Sequence[dict], cache: Path, done: dict, *, progress: bool) -> None:
    with cache.open("a", encoding="utf-8") as f:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            # One row at a time: on a CPU, batching rows of mixed lengths pads more than it saves
            # (measured 1.1 vs 1.9 rows/s on 2 cores); each row's policies still share a prefill.
            verdicts = [(await _check(guard, [row]))[0] for row in chunk]
            for row, verdict in zip(chunk, verdicts):
                done[row["id"]] = _scored(row, verdict)
                f.write(json.dumps(done[row["id"]], ensure_ascii=False) + "\n")
            f.flush()  # an interrupted run keeps what it scored
            if progress:
                print(f"  {cache.name}: {min(start + CHUNK, len(todo))}/{len(todo)} scored", flush=True)


def blocked(scored: Sequence[dict], thresholds: Mapping[str, float]) -> list[dict]:
    """The rows with `blocked` per policy: its score reached the policy's threshold in the row's
    stage (`thresholds["NAME/output"]` for outputs where there is one, else `thresholds["NAME"]`)."""
    return [{**s, "blocked": {p: v >= thresholds.get(f"{p}/{s['stage']}", thresholds[p]) for p, v in s["scores"].items()}}
            for s in scored]


def heldout_table(scored: Sequence[dict], thresholds: Mapping[str, float], policies: Sequence[str]) -> dict[str, dict]:
    groups = pairs_by_group(blocked(scored, thresholds), policies)
    return {k: group_metrics(*v).to_dict() for k, v in groups.items()}


def source_table(scored: Sequence[dict], thresholds: Mapping[str, float], policies: Sequence[str]) -> dict[str, dict]:
    """"any" figures per source (and derived kind): which sources the guard handles badly."""
    by_source: dict[str, list[dict]] = defaultdict(list)
    for s in blocked(scored, thresholds):
        by_source[f"{s['source']}/{s['kind']}" if s.get("kind") else s["source"]].append(s)
    out = {}
    for name, rows in sorted(by_source.items()):
        groups = pairs_by_group(rows, policies)
        if "any" in groups:
            out[name] = group_metrics(*groups["any"]).to_dict()
    return out


def _cell(v: object, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown(report: Mapping) -> str:
    lines = [f"# Evaluation of {report['guard']}", ""]
    t = report["thresholds"]
    lines += [f"Thresholds used: {', '.join(f'{p} {v:.3f}' for p, v in t.items())} ({report['thresholds_from']}).", ""]
    h = report["heldout"]
    lines += [f"## Held-out split: {h['rows']} rows scored (of {h['rows_in_file']}, `{h['file']}`)", ""]
    if h["excluded"]:
        lines += [f"{h['excluded']} held-out rows left out first: they share a text with "
                  f"{', '.join(f'`{p}`' for p in h['exclude_files'])}.", ""]
    lines += ["| group | n | pos | ROC-AUC | AU-PRC | recall@5%FPR | thr@5%FPR | recall | FPR | precision |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for key, m in h["groups"].items():
        cells = [m["n"], m["positives"], m["roc_auc"], m["au_prc"], m["recall_at_fpr"], m["threshold_at_fpr"],
                 m["recall"], m["fpr"], m["precision"]]
        lines.append(f"| {key} | " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "recall@5%FPR: threshold picked on these held-out negatives (a ceiling, not a deployable figure); "
              "recall, FPR, precision: at the thresholds used.", "",
              "### Per source (any policy)", "", "| source | n | pos | ROC-AUC | recall | FPR |", "|---|---|---|---|---|---|"]
    for name, m in h["sources"].items():
        cells = [m["n"], m["positives"], m["roc_auc"], m["recall"], m["fpr"]]
        lines.append(f"| {name} | " + " | ".join(_cell(c) for c in cells) + " |")
    for title, key in (("Must block", "must_block"), ("Over-blocking (everyday requests)", "over_blocking")):
        f = report[key]
        lines += ["", f"## {title}: {f['blocked']}/{f['n']} blocked ({100 * f['blocked_share']:.1f} %)", ""]
        if f["caught_by_labelled_policy"] is not None:
            lines += [f"Caught by the labelled policy itself: {100 * f['caught_by_labelled_policy']:.1f} %.", ""]
        lines += ["| category | n | blocked |", "|---|---|---|"]
        lines += [f"| {c} | {v['n']} | {v['blocked']} |" for c, v in f["by_category"].items()]
        lines += ["", "Policies that fired: " + (", ".join(f"{p} {n}" for p, n in sorted(f["fired"].items())) or "none")]
        if key == "over_blocking" and f["blocked_rows"]:
            lines += ["", "Blocked everyday requests:", ""]
            lines += [f"- `{r['id']}` {r['prompt']!r}: {r['policy']} {r['score']:.2f}" for r in f["blocked_rows"]]
    if report.get("calibration"):
        c = report["calibration"]
        lines += ["", f"## Thresholds fitted on calibration ({c['rows']} rows, `{c['file']}`)", "",
                  f"Goal: highest recall with FPR <= {_pct(c.get('target_fpr', 0.05))} on calibration negatives; interval: 95 % bootstrap "
                  f"({c['rounds']} resamples, positives and negatives resampled separately).", "",
                  "| group | n | pos | threshold | 95 % interval | recall | FPR | best-F1 threshold |",
                  "|---|---|---|---|---|---|---|---|"]
        for key, fit in c["fits"].items():
            lines.append(f"| {key} | {fit['n']} | {fit['positives']} | {fit['threshold']:.3f} | "
                         f"[{fit['low']:.3f}, {fit['high']:.3f}] | {fit['recall']:.3f} | {_cell(fit['fpr'])} | "
                         f"{_cell(fit['best_f1_threshold'])} |")
        lines += ["", *c["notes"]]
    return "\n".join(lines) + "\n"


def _pct(share: float) -> str:
    return f"{100 * share:g} %"


def stage_notes(fits: Mapping[str, Fit], policies: Sequence[str], target: float) -> list[str]:
    """Where the input and output thresholds' intervals do not overlap: per-stage thresholds would help."""
    notes = []
    for p in policies:
        a, b = fits.get(f"{p}/input"), fits.get(f"{p}/output")
        if a and b and (a.high < b.low or b.high < a.low):
            notes.append(f"- {p}: input {a.threshold:.3f} [{a.low:.3f}, {a.high:.3f}] and output {b.threshold:.3f} "
                         f"[{b.low:.3f}, {b.high:.3f}] differ; a per-stage threshold would serve both stages better.")
        for fit in (a, b):
            if fit and fit.positives < 100:
                notes.append(f"- {fit.group}: only {fit.positives} calibration positives (fewer than 100).")
            if fit and fit.recall < 0.8:
                notes.append(f"- {fit.group}: recall {fit.recall:.2f} at FPR <= {_pct(target)}, below the 0.8 goal.")
    return notes


def make_guard(args: argparse.Namespace) -> tuple[Guard, str, str]:
    """The guard to measure, a name for it, and where its thresholds come from."""
    if args.config:
        from guardrail import load_config

        return load_config(args.config).build_guard(), f"`{args.config}`", "the configuration"
    if args.adapter:
        from guardrail import EmbeddedScorer

        found = args.adapter / "thresholds.json"
        saved = json.loads(found.read_text(encoding="utf-8"))["policies"] if found.exists() else {}
        policies = [builtin_policy(p, threshold=saved.get(p, {}).get("threshold", 0.5),
                                   output_threshold=saved.get(p, {}).get("output_threshold")) for p in POLICIES]
        source = f"`{found}`" if found.exists() else "0.5, the adapter has no thresholds.json"
        return Guard(policies, scorer=EmbeddedScorer(adapter=str(args.adapter))), f"adapter `{args.adapter}`", source
    return Guard(), "the shipped embedded guard (Guard())", "the shipped adapter's thresholds.json"


def thresholds_json(fits: Mapping[str, Fit], policies: Sequence[str], calibration: Path, rows: int,
                    target: float) -> dict:
    """`thresholds.json` as `Guard()` reads it (`policies.NAME.threshold`), with intervals and per stage."""
    return {
        "fitted_on": {"data": str(calibration), "rows": rows,
                      "goal": f"highest recall with FPR <= {target:g}; per stage where the stages' intervals do not overlap"},
        "policies": {p: {
            "threshold": round(choose_thresholds(fits, p)[0], 6),
            **({"output_threshold": round(out, 6)} if (out := choose_thresholds(fits, p)[1]) is not None else {}),
            "interval95": [round(fits[p].low, 6), round(fits[p].high, 6)],
            "fit": f"{fits[p].n} pairs ({fits[p].positives} positive); recall {fits[p].recall:.3f} fpr {fits[p].fpr:.3f}",
            "per_stage": {s: fits[f"{p}/{s}"].to_dict() for s in ("input", "output") if f"{p}/{s}" in fits},
        } for p in policies if p in fits},
    }


def run(args: argparse.Namespace, guard: Guard, name: str, source: str) -> dict:
    policies = [p.name for p in guard.policies]
    thresholds = {p.name: p.threshold for p in guard.policies}
    thresholds |= {f"{p.name}/output": p.output_threshold for p in guard.policies if p.output_threshold is not None}
    progress = not args.quiet
    held_all = read_rows(args.heldout)
    held_kept = exclude(held_all, [r for path in args.exclude for r in read_rows(path)])
    held = score_rows(guard, stratified(held_kept, args.limit, seed=args.seed), args.out / "scores-heldout.jsonl",
                      progress=progress)
    lists = {key: score_rows(guard, read_rows(path), args.out / f"scores-{key}.jsonl", progress=progress)
             for key, path in (("must_block", args.must_block), ("over_blocking", args.over_blocking))}
    report: dict = {"guard": name, "thresholds": thresholds, "thresholds_from": source}
    if args.calibration:
        chosen = with_every_positive(read_rows(args.calibration), args.calibration_negatives, seed=args.seed,
                                     per_cell=args.calibration_positives)
        cal = score_rows(guard, stratified(chosen, args.calibration_limit, seed=args.seed),
                         args.out / "scores-calibration.jsonl", progress=progress)
        fits = fit_thresholds(cal, policies, target=args.target_fpr, rounds=args.bootstrap, seed=args.seed)
        report["calibration"] = {"file": str(args.calibration), "rows": len(cal), "rounds": args.bootstrap,
                                 "target_fpr": args.target_fpr, "fits": {k: f.to_dict() for k, f in fits.items()},
                                 "notes": stage_notes(fits, policies, args.target_fpr)}
        if args.thresholds_out:
            data = thresholds_json(fits, policies, args.calibration, len(cal), args.target_fpr)
            args.thresholds_out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        if args.use_fitted:
            thresholds = {p: thresholds[p] for p in policies if p not in fits}
            for p in (p for p in policies if p in fits):
                thresholds[p], output = choose_thresholds(fits, p)
                if output is not None:
                    thresholds[f"{p}/output"] = output
            report.update(thresholds=thresholds, thresholds_from=f"fitted on calibration (FPR <= {_pct(args.target_fpr)})")
    report["heldout"] = {
        "file": str(args.heldout), "rows": len(held), "rows_in_file": len(held_all),
        "excluded": len(held_all) - len(held_kept), "exclude_files": [str(p) for p in args.exclude],
        "groups": heldout_table(held, thresholds, policies), "sources": source_table(held, thresholds, policies),
    }
    for key, rows in lists.items():
        report[key] = list_figures(blocked(rows, thresholds))
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = p.add_mutually_exclusive_group()
    which.add_argument("--adapter", type=Path, help="embedded base + this LoRA adapter (its thresholds.json if any)")
    which.add_argument("--config", type=Path, help="a guardrail TOML configuration")
    p.add_argument("--heldout", type=Path, required=True)
    p.add_argument("--limit", type=int, help="score a stratified subset of this many held-out rows")
    p.add_argument("--exclude", type=Path, nargs="*", default=[],
                   help="JSONL rows (e.g. an adapter's training rows) whose texts leave the held-out split")
    p.add_argument("--must-block", type=Path, default=DATA / "must_block.jsonl")
    p.add_argument("--over-blocking", type=Path, default=DATA / "over_blocking.jsonl")
    p.add_argument("--calibration", type=Path, help="fit thresholds (see --target-fpr) with bootstrap intervals")
    p.add_argument("--calibration-limit", type=int)
    p.add_argument("--calibration-negatives", type=int,
                   help="keep every calibration row with a positive label and this many of the others")
    p.add_argument("--calibration-positives", type=int,
                   help="with --calibration-negatives: at most this many positives per policy and stage")
    p.add_argument("--target-fpr", type=float, default=0.05,
                   help="thresholds: the highest recall with at most this false-positive rate on calibration")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--use-fitted", action="store_true", help="measure held-out and lists at the fitted thresholds")
    p.add_argument("--thresholds-out", type=Path, help="write the fitted thresholds.json here")
    p.add_argument("--seed", type=int, default=20240611)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None, *, guard: Guard | None = None) -> int:
    """`guard` replaces the one the options describe (tests pass one with a fake scorer)."""
    args = parser().parse_args(argv)
    name, source = "a given guard", "its policies"
    if guard is None:
        guard, name, source = make_guard(args)
    report = run(args, guard, name, source)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    text = markdown(report)
    (args.out / "report.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
