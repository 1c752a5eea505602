"""Measure a configured guard on labeled data: per policy, per stage, and "any policy".

"any" follows the ShieldGemma paper: the score of a turn is the max over its policies' scores,
and the turn is positive when any of its known labels is 1 (negative when every known label of
the guard's policies is 0; rows with no known label for the guard's policies are skipped).

>>> from guardrail import load_config
>>> from guardrail._data import load_labeled
>>> guard = load_config("guard.toml").build_guard()                       # doctest: +SKIP
>>> report = evaluate(guard, load_labeled(["held_out.jsonl"]))            # doctest: +SKIP
>>> report.groups["hate"].roc_auc, report.groups["any"].best_f1           # doctest: +SKIP
>>> write_report(report, "eval-out")       # report.json + PNG plots      # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardrail._data import LabeledExample
from guardrail._exceptions import ScorerError

if TYPE_CHECKING:
    from guardrail._guard import Guard

__all__ = ["BinaryMetrics", "EvalReport", "binary_metrics", "evaluate", "write_report"]

ANY = "any"


@dataclass(frozen=True, kw_only=True)
class BinaryMetrics:
    """Threshold-free metrics, the F1-optimal threshold, and the metrics at `threshold`.

    `roc_auc`/`au_prc` are None when only one class is present. For "any", `threshold` is None:
    precision/recall/F1 there count a turn positive when any policy hit its own threshold.
    """

    n: int
    positives: int
    roc_auc: float | None
    au_prc: float | None
    best_f1: float | None
    best_threshold: float | None
    threshold: float | None
    precision: float
    recall: float
    f1: float
    fpr: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def binary_metrics(scores: Sequence[float], labels: Sequence[int], *, threshold: float = 0.5) -> BinaryMetrics:
    """Metrics for P(Yes) `scores` against 0/1 `labels`; positive means score >= threshold.

    >>> m = binary_metrics([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0])
    >>> m.roc_auc, m.f1
    (1.0, 1.0)
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

    positives = sum(labels)
    n = len(labels)
    tp = sum(1 for s, y in zip(scores, labels) if y and s >= threshold)
    fp = sum(1 for s, y in zip(scores, labels) if not y and s >= threshold)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    fpr = fp / (n - positives) if n - positives else None
    roc = ap = best_f1 = best_t = None
    if 0 < positives < n:
        roc = float(roc_auc_score(labels, scores))
        ap = float(average_precision_score(labels, scores))
    if positives:
        best_f1, best_t = best_f1_threshold(scores, labels, curve=precision_recall_curve)
    return BinaryMetrics(
        n=n, positives=positives, roc_auc=roc, au_prc=ap, best_f1=best_f1, best_threshold=best_t,
        threshold=threshold, precision=precision, recall=recall, f1=f1, fpr=fpr,
    )


def best_f1_threshold(scores: Sequence[float], labels: Sequence[int], *, curve: Callable[..., Any]) -> tuple[float, float]:
    """The best F1 over thresholds at the observed scores, and that threshold."""
    precision, recall, thresholds = curve(labels, scores)
    best, at = -1.0, 0.5
    for p, r, t in zip(precision[:-1], recall[:-1], thresholds):
        f = 2 * p * r / (p + r) if p + r else 0.0
        if f > best:
            best, at = float(f), float(t)
    return best, at


@dataclass(frozen=True, kw_only=True)
class GroupScores:
    """The raw material of one group: scores, labels, and the threshold the guard uses."""

    scores: list[float] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    predicted: list[bool] = field(default_factory=list)
    threshold: float | None = None


@dataclass(frozen=True, kw_only=True)
class EvalReport:
    """Metrics per group (`hate`, `hate/input`, ..., `any`) and latency per checked turn."""

    groups: dict[str, BinaryMetrics]
    raw: dict[str, GroupScores]
    latency_ms: dict[str, float]
    rows: int
    skipped: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "skipped_rows": self.skipped,
            "latency_ms": self.latency_ms,
            "groups": {k: m.to_dict() for k, m in self.groups.items()},
        }


def _add(groups: dict[str, GroupScores], key: str, score: float, label: int, predicted: bool, threshold: float | None) -> None:
    group = groups.setdefault(key, GroupScores(threshold=threshold))
    group.scores.append(score)
    group.labels.append(label)
    group.predicted.append(predicted)


def evaluate(guard: Guard, examples: Sequence[LabeledExample], *, progress: bool = False) -> EvalReport:
    """Check every example with `guard` (input or output stage by its `response`) and measure."""
    from tqdm.auto import tqdm

    names = {p.name for p in guard.policies}
    groups: dict[str, GroupScores] = {}
    latencies: list[float] = []
    skipped = 0
    for example in tqdm(examples, desc="eval", disable=not progress):
        known = {k: v for k, v in example.labels.items() if k in names}
        if not known:
            skipped += 1
            continue
        started = time.perf_counter()
        verdict = guard.check(example.messages(), example.stage)
        latencies.append((time.perf_counter() - started) * 1000)
        failed = [d for d in verdict.decisions if d.error is not None]
        if failed:  # a fail-closed block is not a measurement
            raise ScorerError(f"example {example.id!r}: no score for {failed[0].policy!r}: {failed[0].error}")
        stage = example.stage.value
        for d in verdict.decisions:
            if d.policy in known:
                for key in (d.policy, f"{d.policy}/{stage}"):
                    _add(groups, key, d.score, known[d.policy], d.triggered, d.threshold)
        if verdict.decisions:
            # "any" over the policies with a known label: a positive needs only one 1.
            scored = [d for d in verdict.decisions if d.policy in known]
            if scored:
                label = int(any(known[d.policy] for d in scored))
                top = max(d.score for d in scored)
                blocked = any(d.triggered for d in scored)
                for key in (ANY, f"{ANY}/{stage}"):
                    _add(groups, key, top, label, blocked, None)
    metrics = {key: _metrics(g) for key, g in sorted(groups.items())}
    return EvalReport(groups=metrics, raw=groups, latency_ms=_latency(latencies), rows=len(examples), skipped=skipped)


def _metrics(group: GroupScores) -> BinaryMetrics:
    base = binary_metrics(group.scores, group.labels, threshold=group.threshold if group.threshold is not None else 0.5)
    if group.threshold is not None:
        return base
    # "any" at the configured thresholds: positive when any policy triggered.
    tp = sum(1 for p, y in zip(group.predicted, group.labels) if p and y)
    fp = sum(1 for p, y in zip(group.predicted, group.labels) if p and not y)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / base.positives if base.positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    negatives = base.n - base.positives
    return BinaryMetrics(**{**base.to_dict(), "threshold": None, "precision": precision, "recall": recall,
                            "f1": f1, "fpr": fp / negatives if negatives else None})


def _latency(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "mean": statistics.fmean(values),
        "p50": ordered[len(ordered) // 2],
        "p95": ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)],
        "checks": float(len(values)),
    }


def write_report(report: EvalReport, out_dir: str | Path, *, plots: bool = True) -> Path:
    """Write `report.json` and, with `plots`, `pr_<group>.png` and `hist_<group>.png` per group."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = report.to_dict()
    path = out / "report.json"
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    if plots:
        for key, group in report.raw.items():
            _plot(key, group, report.groups[key], out)
    return path


def _plot(key: str, group: GroupScores, metrics: BinaryMetrics, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    safe = key.replace("/", "_")
    if 0 < metrics.positives < metrics.n:
        precision, recall, _ = precision_recall_curve(group.labels, group.scores)
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot(recall, precision, label=f"AU-PRC {metrics.au_prc:.3f}")
        ax.scatter([metrics.recall], [metrics.precision], color="red", zorder=3,
                   label=f"configured threshold ({_label(metrics.threshold)})")
        ax.set(xlabel="recall", ylabel="precision", title=f"{key}: precision-recall", xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(loc="lower left")
        fig.tight_layout()
        fig.savefig(out / f"pr_{safe}.png", dpi=100)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    bins = [i / 20 for i in range(21)]
    for label, name in ((0, "negative"), (1, "positive")):
        values = [s for s, y in zip(group.scores, group.labels) if y == label]
        if values:
            ax.hist(values, bins=bins, alpha=0.6, label=f"{name} ({len(values)})")
    if metrics.threshold is not None:
        ax.axvline(metrics.threshold, color="red", linestyle="--", label="threshold")
    ax.set(xlabel="P(Yes)", ylabel="count", title=f"{key}: scores by label")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"hist_{safe}.png", dpi=100)
    plt.close(fig)


def _label(threshold: float | None) -> str:
    return "per policy" if threshold is None else f"{threshold:.2f}"
