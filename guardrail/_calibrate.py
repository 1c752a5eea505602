"""Pick each policy's threshold from labeled data and write it into the TOML configuration.

Goals: `f1` (the F1-optimal threshold), or a target: `fpr` (at most this false-positive rate,
catching as much as possible), `precision` (at least this precision, catching as much as
possible) or `recall` (at least this recall, with as few false positives as possible).

>>> pick_threshold([0.9, 0.7, 0.4, 0.1], [1, 1, 0, 0], goal="f1").threshold
0.7

The file is edited as text, so comments and layout survive: in each `[policies.NAME]` table the
`threshold = ...` line is replaced (or added), with a comment above it saying what it was fit on.
The edit is checked by parsing the result; a layout it cannot edit safely is a `ConfigError`.

    guardrail calibrate held_out.jsonl --config guard.toml --goal precision --target 0.9
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardrail._data import DataSummary, LabeledExample
from guardrail._exceptions import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

if TYPE_CHECKING:
    from guardrail._guard import Guard

__all__ = ["GOALS", "Calibration", "calibrate", "pick_threshold", "write_thresholds"]

GOALS = ("f1", "fpr", "precision", "recall")


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """A chosen threshold and what it achieves on the data it was fit on."""

    policy: str
    threshold: float
    goal: str
    target: float | None
    precision: float
    recall: float
    f1: float
    fpr: float | None
    n: int
    positives: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _at(scores: Sequence[float], labels: Sequence[int], t: float) -> tuple[float, float, float, float | None]:
    tp = sum(1 for s, y in zip(scores, labels) if y and s >= t)
    fp = sum(1 for s, y in zip(scores, labels) if not y and s >= t)
    pos = sum(labels)
    neg = len(labels) - pos
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / pos if pos else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1, (fp / neg if neg else None)


def pick_threshold(
    scores: Sequence[float], labels: Sequence[int], *, goal: str = "f1", target: float | None = None,
    policy: str = "",
) -> Calibration:
    """The threshold that best meets `goal` on these scores.

    The best observed score is found first; the threshold then goes midway between it and the
    next lower observed score. Every decision on this data stays the same (no score lies in
    between), and new scores near the boundary get the most room on either side: a threshold
    at a positive's exact score would miss a positive scoring a hair lower.
    """
    if goal not in GOALS:
        raise ConfigError(f"calibration goal must be one of {', '.join(GOALS)}, got {goal!r}")
    if (goal == "f1") != (target is None):
        raise ConfigError("give a target for fpr/precision/recall goals, and none for f1")
    if target is not None and not 0.0 <= target <= 1.0:
        raise ConfigError(f"calibration target must be in [0, 1], got {target!r}")
    if len(scores) != len(labels) or not labels:
        raise ConfigError(f"need equally many scores and labels, got {len(scores)} and {len(labels)}")
    positives = sum(labels)
    if goal in ("f1", "precision", "recall") and not positives:
        raise ConfigError(f"policy {policy!r}: no positive examples to calibrate {goal} on")
    if goal == "fpr" and positives == len(labels):
        raise ConfigError(f"policy {policy!r}: no negative examples to calibrate a false-positive rate on")
    candidates = []
    for t in sorted(set(scores)):
        precision, recall, f1, fpr = _at(scores, labels, t)
        ok = {
            "f1": True,
            "fpr": fpr is not None and fpr <= target if target is not None else False,
            "precision": precision >= target if target is not None else False,
            "recall": recall >= target if target is not None else False,
        }[goal]
        if ok:
            # Ties go to the higher threshold (fewer flags for the same result).
            key = {"f1": (f1, t), "fpr": (recall, t), "precision": (recall, t), "recall": (-(fpr or 0.0), t)}[goal]
            candidates.append((key, t, precision, recall, f1, fpr))
    if not candidates:
        raise ConfigError(f"policy {policy!r}: no threshold reaches {goal} {target} on this data")
    _, t, precision, recall, f1, fpr = max(candidates, key=lambda c: c[0])
    below = [s for s in scores if s < t]
    threshold = (max(below) + t) / 2 if below else t
    return Calibration(
        policy=policy, threshold=float(threshold), goal=goal, target=target, precision=precision,
        recall=recall, f1=f1, fpr=fpr, n=len(labels), positives=positives,
    )


def calibrate(
    guard: Guard, examples: Sequence[LabeledExample], *, goal: str = "f1", target: float | None = None,
    progress: bool = False,
) -> dict[str, Calibration]:
    """Score `examples` with `guard` and pick a threshold for each policy that has labeled data.

    One threshold per policy covers both stages (a policy has one threshold).
    """
    from guardrail._evaluate import evaluate

    raw = evaluate(guard, examples, progress=progress).raw
    result = {}
    for policy in guard.policies:
        group = raw.get(policy.name)
        if group is not None:
            result[policy.name] = pick_threshold(group.scores, group.labels, goal=goal, target=target, policy=policy.name)
    if not result:
        raise ConfigError(f"no example has a label for any of: {', '.join(p.name for p in guard.policies)}")
    return result


_HEADER = re.compile(r"^\s*\[\s*(?P<name>[^\]]+?)\s*\]\s*(#.*)?$")
_THRESHOLD = re.compile(r"^\s*threshold\s*=")
_NOTE = "# calibrated by guardrail:"


def _note(c: Calibration, data: DataSummary | None) -> str:
    goal = c.goal if c.target is None else f"{c.goal} >= {c.target}" if c.goal != "fpr" else f"fpr <= {c.target}"
    fit = f"{c.n} pairs ({c.positives} positive)"
    if data:
        fit += f" from {data.rows} rows, sha256 {data.sha256[:16]}"
    fpr = "n/a" if c.fpr is None else f"{c.fpr:.3f}"
    return f"{_NOTE} {goal} on {fit}; precision {c.precision:.3f} recall {c.recall:.3f} f1 {c.f1:.3f} fpr {fpr}"


def _edit(lines: list[str], name: str, threshold: float, note: str) -> list[str]:
    header = f"policies.{name}"
    start = next((i for i, line in enumerate(lines) if (m := _HEADER.match(line)) and m["name"] == header), None)
    entry = [note, f"threshold = {threshold!r}"]
    if start is None:
        block = ([""] if lines and lines[-1].strip() else []) + [f"[{header}]", *entry]
        return lines + block
    end = next((i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])), len(lines))
    body = [line for line in lines[start + 1 : end] if not _THRESHOLD.match(line) and not line.lstrip().startswith(_NOTE)]
    return lines[: start + 1] + entry + body + lines[end:]


def write_thresholds(
    path: str | Path, calibrations: Mapping[str, Calibration], *, data: DataSummary | None = None,
    all_policies: Sequence[str] = (),
) -> str:
    """Set each policy's threshold in the TOML file at `path`, keeping everything else.

    When the file lists no policies (so the built-in defaults apply), `all_policies` are written
    as tables too, so that adding one table does not drop the others. Returns the new text.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    configured = dict(before.get("policies", {}))
    lines = text.splitlines()
    if not configured:
        for name in all_policies:
            lines += ([""] if lines and lines[-1].strip() else []) + [f"[policies.{name}]"]
    for name, c in calibrations.items():
        lines = _edit(lines, name, round(c.threshold, 6), _note(c, data))
    new_text = "\n".join(lines) + "\n"
    _verify(path, before, new_text, {n: round(c.threshold, 6) for n, c in calibrations.items()})
    path.write_text(new_text, encoding="utf-8")
    return new_text


def _verify(path: Path, before: dict[str, Any], new_text: str, thresholds: Mapping[str, float]) -> None:
    """Refuse an edit that changed anything but the thresholds (e.g. dotted keys, inline tables)."""
    try:
        after = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: cannot edit this layout safely ({exc}); set the thresholds by hand") from None
    expected = {k: v for k, v in before.items() if k != "policies"}
    policies = {k: dict(v) for k, v in before.get("policies", {}).items()}
    for name, t in thresholds.items():
        policies.setdefault(name, {})["threshold"] = t
    got = {k: v for k, v in after.items() if k != "policies"}
    got_policies = {k: dict(v) for k, v in after.get("policies", {}).items()}
    for name in set(got_policies) - set(policies):
        if got_policies[name] == {}:  # a plain table added to keep a built-in
            policies[name] = {}
    if got != expected or got_policies != policies:
        raise ConfigError(f"{path}: cannot edit this layout safely; set the thresholds by hand: {dict(thresholds)}")
