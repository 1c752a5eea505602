"""Near-duplicate texts by token Jaccard: keeps evaluation lists and held-out rows out of training.

Tokens are lower-cased runs of letters and digits; two texts collide when the Jaccard index of
their token sets reaches the threshold. An index over many texts answers each query with prefix
filtering (only texts sharing one of the query's rarest tokens are compared), so checking tens of
thousands of rows takes seconds.

    python scripts/near_duplicates.py scripts/data/must_block.jsonl scripts/data/over_blocking.jsonl \
        --against scripts/data/handwritten.jsonl scripts/data/handwritten_v2.jsonl /tmp/mix/train.jsonl

>>> jaccard(tokens("How do I bake bread?"), tokens("how do i bake BREAD"))
1.0
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["TextIndex", "jaccard", "judged_text", "tokens"]

_TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> frozenset[str]:
    return frozenset(_TOKEN.findall(text.lower()))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def judged_text(row: dict) -> str:
    """The text a classifier judges in a row: the response at the output stage, else the prompt."""
    return row["response"] if row.get("response") is not None else row["prompt"]


class TextIndex:
    """Texts indexed for `near(query)`: which of them reach `threshold` Jaccard with the query."""

    def __init__(self, texts: Sequence[str], *, threshold: float) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        self.threshold = threshold
        self.sets = [tokens(t) for t in texts]
        self.frequency = Counter(tok for s in self.sets for tok in s)
        self.postings: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(self.sets):
            for tok in self._prefix(s):
                self.postings[tok].append(i)

    def _prefix(self, s: frozenset[str]) -> list[str]:
        # Two sets at Jaccard >= t share at least ceil(t * |s|) tokens, so one of s's
        # |s| - ceil(t * |s|) + 1 rarest tokens is shared (rarest = least frequent in the index).
        ordered = sorted(s, key=lambda tok: (self.frequency.get(tok, 0), tok))
        return ordered[: len(s) - math.ceil(self.threshold * len(s)) + 1]

    def near(self, text: str) -> list[tuple[int, float]]:
        """(index, Jaccard) of every indexed text at or above the threshold, best first."""
        query = tokens(text)
        if not query:
            return [(i, 1.0) for i, s in enumerate(self.sets) if not s]
        seen = {i for tok in self._prefix(query) for i in self.postings.get(tok, ())}
        hits = [(i, jaccard(query, self.sets[i])) for i in seen]
        return sorted(((i, j) for i, j in hits if j >= self.threshold), key=lambda h: (-h[1], h[0]))


def collisions(queries: Iterable[dict], against: Sequence[dict], *, threshold: float) -> list[tuple[dict, dict, float]]:
    """(query row, indexed row, Jaccard) for each query row near an `against` row."""
    index = TextIndex([judged_text(r) for r in against], threshold=threshold)
    return [(q, against[i], j) for q in queries for i, j in index.near(judged_text(q))]


def _read(paths: Sequence[Path]) -> list[dict]:
    return [json.loads(line) for p in paths for line in p.read_text(encoding="utf-8").split("\n") if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queries", type=Path, nargs="+", help="JSONL files that must stay apart")
    parser.add_argument("--against", type=Path, nargs="+", required=True, help="JSONL files to check against")
    parser.add_argument("--threshold", type=float, default=0.6)
    args = parser.parse_args(argv)
    found = collisions(_read(args.queries), _read(args.against), threshold=args.threshold)
    for q, a, j in found:
        print(f"{j:.2f}  {q.get('id')}: {judged_text(q)[:90]!r}\n      {a.get('id')}: {judged_text(a)[:90]!r}")
    print(f"{len(found)} collision(s) at Jaccard >= {args.threshold}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
