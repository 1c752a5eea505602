"""Rows of the training mix and the balanced sampler that picks them.

A cell is a policy at a stage (`hate/input`, `sexual/output`, ...). For each cell the sampler
takes up to `cap` positives and then `neg_ratio` negatives per positive, hard negatives first
(`hard_share` of the negative slots, the rest ordinary negatives). Inside every pool the sources
take turns (round-robin over `source/kind`), so a large source cannot crowd out a small one.

A row keeps all its known labels, so a row picked for one cell also counts in the others. With
`thin`, a cell that ends up with more than `neg_ratio` negatives per positive through such
spill-over loses the surplus *labels* (never rows picked for it, never hand-written rows, never
positives): a dropped label is unknown for that row, which is always allowed.

`fit_budget` finds the largest `cap` whose selection stays within a budget of (row, policy) pairs.
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["CELLS", "POLICIES", "Pools", "Row", "cell_counts", "fit_budget", "pairs", "select"]

POLICIES = ("dangerous", "harassment", "hate", "sexual")
STAGES = ("input", "output")
CELLS = tuple(f"{p}/{s}" for p in POLICIES for s in STAGES)


@dataclass(frozen=True, kw_only=True)
class Row:
    """One row of the mix. `kind` says how it was made; `base` is the source row it came from."""

    id: str
    prompt: str
    response: str | None
    labels: dict[str, int]
    source: str
    kind: str = "source"  # source | handwritten | comply | refuse | echo | as_prompt | as_input | ask
    hard: bool = False
    must: bool = False  # hand-written: always kept, never thinned
    base: str = ""

    @property
    def stage(self) -> str:
        return "output" if self.response is not None else "input"

    @property
    def group(self) -> str:
        return f"{self.source}/{self.kind}"

    def cells(self, value: int) -> list[str]:
        return [f"{p}/{self.stage}" for p, v in self.labels.items() if v == value]

    def to_json(self) -> dict:
        return {"id": self.id, "prompt": self.prompt, "response": self.response, "labels": dict(self.labels),
                "source": self.source, "meta": {"kind": self.kind, "hard": self.hard, "base": self.base or self.id}}


def pairs(rows: Iterable[Row]) -> int:
    return sum(len(r.labels) for r in rows)


def cell_counts(rows: Iterable[Row]) -> dict[str, dict[str, int]]:
    counts = {c: {"pos": 0, "neg": 0} for c in CELLS}
    for r in rows:
        for value, key in ((1, "pos"), (0, "neg")):
            for c in r.cells(value):
                counts.setdefault(c, {"pos": 0, "neg": 0})[key] += 1
    return counts


def _interleave(rows: Sequence[Row], rng: random.Random) -> list[Row]:
    """Shuffle within each `source/kind` group, then take one from each group in turn."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        groups[r.group].append(r)
    queues = []
    for name in sorted(groups):
        items = list(groups[name])
        rng.shuffle(items)
        queues.append(items[::-1])  # pop() from the end keeps the shuffled order
    out: list[Row] = []
    while queues:
        out.extend(q.pop() for q in queues)
        queues = [q for q in queues if q]
    return out


@dataclass(frozen=True)
class Pools:
    """Each cell's candidates, in the order the sampler takes them."""

    must: list[Row]
    pos: dict[str, list[Row]] = field(default_factory=dict)
    hard: dict[str, list[Row]] = field(default_factory=dict)
    easy: dict[str, list[Row]] = field(default_factory=dict)

    @classmethod
    def build(cls, rows: Sequence[Row], *, seed: int) -> Pools:
        must = [r for r in rows if r.must]
        found: dict[str, dict[str, list[Row]]] = {k: defaultdict(list) for k in ("pos", "hard", "easy")}
        for r in rows:
            if r.must:
                continue
            for c in r.cells(1):
                found["pos"][c].append(r)
            for c in r.cells(0):
                found["hard" if r.hard else "easy"][c].append(r)
        ordered = {
            kind: {c: _interleave(found[kind][c], random.Random(f"{seed}:{kind}:{c}")) for c in CELLS}
            for kind in found
        }
        return cls(must=must, **ordered)


def select(pools: Pools, *, cap: int, neg_ratio: float, hard_share: float, thin: bool) -> list[Row]:
    """The rows for one `cap` (positives per cell), in a stable order."""
    chosen: dict[str, Row] = {r.id: r for r in pools.must}
    for c in CELLS:
        chosen.update((r.id, r) for r in pools.pos[c][:cap])
    counts = cell_counts(chosen.values())
    must_neg = cell_counts(pools.must)
    picked: dict[str, set[str]] = {}
    for c in CELLS:
        want = max(0, round(neg_ratio * counts[c]["pos"]) - must_neg[c]["neg"])
        hard = min(len(pools.hard[c]), round(hard_share * want))
        easy = min(len(pools.easy[c]), want - hard)
        hard = min(len(pools.hard[c]), want - easy)  # too few ordinary ones: more hard ones
        rows = pools.hard[c][:hard] + pools.easy[c][:easy]
        picked[c] = {r.id for r in rows}
        chosen.update((r.id, r) for r in rows)
    if thin:
        chosen = _thin(chosen, picked, neg_ratio)
    return [r for r in chosen.values() if r.labels]


def _thin(chosen: dict[str, Row], picked: dict[str, set[str]], neg_ratio: float) -> dict[str, Row]:
    """Drop negative labels a cell got only through spill-over, beyond `neg_ratio` per positive."""
    counts = cell_counts(chosen.values())
    for c in CELLS:
        policy, stage = c.split("/")
        limit = round(neg_ratio * counts[c]["pos"])
        negatives = [r for r in chosen.values() if r.stage == stage and r.labels.get(policy) == 0]
        if len(negatives) <= limit:
            continue
        # Keep order: hand-written, picked for this cell, then spill-over (hard before ordinary).
        negatives.sort(key=lambda r: (not r.must, r.id not in picked[c], not r.hard))
        for r in negatives[limit:]:
            if r.must or r.id in picked[c]:
                continue
            current = chosen[r.id]
            chosen[r.id] = dataclasses.replace(current, labels={k: v for k, v in current.labels.items() if k != policy})
    return chosen


def fit_budget(pools: Pools, *, budget: int, neg_ratio: float, hard_share: float) -> tuple[list[Row], int]:
    """The selection with the largest per-cell positive cap whose pairs fit `budget`, and that cap."""
    top = max((len(v) for v in pools.pos.values()), default=0)
    lo, hi = 0, top
    while lo < hi:  # the pair count grows with the cap
        mid = (lo + hi + 1) // 2
        if pairs(select(pools, cap=mid, neg_ratio=neg_ratio, hard_share=hard_share, thin=True)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return select(pools, cap=lo, neg_ratio=neg_ratio, hard_share=hard_share, thin=True), lo
