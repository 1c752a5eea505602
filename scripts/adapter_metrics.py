"""Metrics over scored rows: per policy and stage, the two hand-written lists, thresholds with intervals.

A scored row is a dict: `id`, `source`, `stage`, `labels` (known 0/1 per policy), `scores`
(P(Yes) per policy of the guard), and optionally `category`. The threshold-free metrics and the
F1 figures come from `guardrail._evaluate.binary_metrics`, the thresholds from
`guardrail._calibrate.pick_threshold`; this module only groups rows and adds what those lack:
recall at a fixed false-positive rate, bootstrap intervals, and the list figures.

"any" follows `guardrail._evaluate`: a row's score is the max over the policies it has a label
for, and it is positive when any of those labels is 1; "blocked" means one of those policies
reached its threshold.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from guardrail import ConfigError
from guardrail.classifier import binary_metrics, pick_threshold

__all__ = ["Fit", "GroupMetrics", "choose_thresholds", "fit_thresholds", "fpr_threshold", "group_metrics", "list_figures", "pairs_by_group"]

ANY = "any"
TARGET_FPR = 0.05


def pairs_by_group(rows: Sequence[Mapping], policies: Sequence[str]) -> dict[str, tuple[list[float], list[int], list[bool]]]:
    """(scores, labels, blocked-by-this-group) per `policy/stage`, `policy`, `any/stage` and `any`."""
    groups: dict[str, tuple[list[float], list[int], list[bool]]] = defaultdict(lambda: ([], [], []))

    def add(key: str, score: float, label: int, blocked: bool) -> None:
        g = groups[key]
        g[0].append(score)
        g[1].append(label)
        g[2].append(blocked)

    for row in rows:
        known = {p: v for p, v in row["labels"].items() if p in policies}
        if not known:
            continue
        hits = row.get("blocked", {})  # absent before thresholds are applied (fitting)
        for p, v in known.items():
            for key in (f"{p}/{row['stage']}", p):
                add(key, row["scores"][p], v, hits.get(p, False))
        top = max(row["scores"][p] for p in known)
        hit = any(hits.get(p, False) for p in known)
        for key in (f"{ANY}/{row['stage']}", ANY):
            add(key, top, int(any(known.values())), hit)
    return dict(sorted(groups.items()))


@dataclass(frozen=True, kw_only=True)
class GroupMetrics:
    """One group's figures. `*_at_fpr` use the threshold reaching FPR <= 5 % on these negatives."""

    n: int
    positives: int
    roc_auc: float | None
    au_prc: float | None
    recall_at_fpr: float | None
    threshold_at_fpr: float | None
    recall: float | None  # at the guard's thresholds
    fpr: float | None
    precision: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def group_metrics(scores: Sequence[float], labels: Sequence[int], blocked: Sequence[bool]) -> GroupMetrics:
    base = binary_metrics(scores, labels)
    positives, negatives = sum(labels), len(labels) - sum(labels)
    try:
        at_fpr = pick_threshold(scores, labels, goal="fpr", target=TARGET_FPR) if positives and negatives else None
    except ConfigError:  # the top negatives tie with every higher score: no threshold reaches 5 %
        at_fpr = None
    tp = sum(1 for b, y in zip(blocked, labels) if b and y)
    fp = sum(1 for b, y in zip(blocked, labels) if b and not y)
    return GroupMetrics(
        n=len(labels), positives=positives, roc_auc=base.roc_auc, au_prc=base.au_prc,
        recall_at_fpr=at_fpr.recall if at_fpr else None, threshold_at_fpr=at_fpr.threshold if at_fpr else None,
        recall=tp / positives if positives else None, fpr=fp / negatives if negatives else None,
        precision=tp / (tp + fp) if tp + fp else None,
    )


def fpr_threshold(scores: Sequence[float], labels: Sequence[int], target: float = TARGET_FPR) -> float:
    """`pick_threshold(goal="fpr")`'s threshold in O(n log n), for bootstrap resamples.

    At most floor(target * negatives) negatives may reach it. Of the observed scores that allow
    that, the lowest keeps the most recall; like `pick_threshold`, take the highest score with that
    same recall (the lowest positive above), then go midway down to the next observed score.
    """
    negatives = sorted((s for s, y in zip(scores, labels) if not y), reverse=True)
    allowed = math.floor(target * len(negatives) + 1e-9)
    if allowed >= len(negatives):
        lowest = min(scores)
    else:
        above = [s for s in scores if s > negatives[allowed]]
        if not above:
            raise ValueError("no threshold reaches this false-positive rate")
        lowest = min(above)
    caught = [s for s, y in zip(scores, labels) if y and s >= lowest]
    t = min(caught) if caught else max(scores)
    below = [s for s in scores if s < t]
    return (max(below) + t) / 2 if below else t


def _bootstrap(pos: list[float], neg: list[float], *, target: float, rounds: int, rng: random.Random) -> list[float]:
    """Thresholds refitted on `rounds` resamples (positives and negatives resampled separately)."""
    out = []
    for _ in range(rounds):
        p, n = rng.choices(pos, k=len(pos)), rng.choices(neg, k=len(neg))
        try:
            out.append(fpr_threshold(p + n, [1] * len(p) + [0] * len(n), target))
        except ValueError:  # every resampled score tied with a top negative: no threshold
            continue
    return sorted(out)


@dataclass(frozen=True, kw_only=True)
class Fit:
    """A threshold fitted for FPR <= target on calibration rows, its bootstrap interval and effect."""

    group: str
    n: int
    positives: int
    threshold: float
    low: float
    high: float
    recall: float
    fpr: float | None
    best_f1_threshold: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def fit_thresholds(
    rows: Sequence[Mapping], policies: Sequence[str], *, target: float = TARGET_FPR, rounds: int = 1000, seed: int = 0
) -> dict[str, Fit]:
    """Per `policy` (stages pooled) and `policy/stage`: the FPR-target threshold and a 95 % interval.

    The interval resamples positives and negatives separately (`rounds` times) and refits.
    """
    rng = random.Random(seed)
    fits = {}
    for key, (scores, labels, _) in pairs_by_group(rows, policies).items():
        if key.startswith(ANY) or not 0 < sum(labels) < len(labels):
            continue
        chosen = pick_threshold(scores, labels, goal="fpr", target=target, policy=key)
        pos = [s for s, y in zip(scores, labels) if y]
        neg = [s for s, y in zip(scores, labels) if not y]
        boots = _bootstrap(pos, neg, target=target, rounds=rounds, rng=rng) or [chosen.threshold]
        fits[key] = Fit(
            group=key, n=len(labels), positives=len(pos), threshold=chosen.threshold,
            low=boots[int(0.025 * len(boots))], high=boots[min(len(boots) - 1, int(0.975 * len(boots)))],
            recall=chosen.recall, fpr=chosen.fpr, best_f1_threshold=binary_metrics(scores, labels).best_threshold,
        )
    return fits


def choose_thresholds(fits: Mapping[str, Fit], policy: str) -> tuple[float, float | None]:
    """(threshold, output_threshold): per stage where the stages' 95 % intervals do not overlap
    (one threshold would be too strict for one stage and too lax for the other), else pooled."""
    a, b = fits.get(f"{policy}/input"), fits.get(f"{policy}/output")
    if a and b and (a.high < b.low or b.high < a.low):
        return a.threshold, b.threshold
    return fits[policy].threshold, None


def list_figures(rows: Sequence[Mapping]) -> dict:
    """How many list rows the guard blocked (any policy), overall, per category and per policy fired."""
    blocked = [r for r in rows if any(r["blocked"].values())]
    by_category: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        by_category[r.get("category", "-")][0] += 1
        by_category[r.get("category", "-")][1] += any(r["blocked"].values())
    own = [r for r in rows if any(v == 1 for v in r["labels"].values())]
    caught_by_own = sum(1 for r in own if any(r["blocked"].get(p) for p, v in r["labels"].items() if v == 1))
    return {
        "n": len(rows),
        "blocked": len(blocked),
        "blocked_share": len(blocked) / len(rows) if rows else None,
        "caught_by_labelled_policy": caught_by_own / len(own) if own else None,
        "by_category": {k: {"n": n, "blocked": b} for k, (n, b) in sorted(by_category.items())},
        "fired": dict(Counter(p for r in rows for p, hit in r["blocked"].items() if hit)),
        "blocked_rows": [
            {"id": r["id"], "prompt": r["prompt"], "policy": max(r["scores"], key=r["scores"].get),
             "score": max(r["scores"].values())}
            for r in blocked
        ],
    }
