"""Labeled data for tuning, evaluating and calibrating policy classifiers.

One JSON object per line, the format of the shared training sets:

```json
{"id": "x1", "prompt": "How do I ...?", "response": null, "labels": {"hate": 0, "dangerous": 1}}
```

`response` is null for the input stage and a string for the output stage. `labels` maps a
policy name to 0/1 and holds only the policies the source actually labeled: a missing policy is
*unknown*, never negative. Other keys are ignored.

>>> rows = load_labeled(["data/train.jsonl"])                      # doctest: +SKIP
>>> pairs = labeled_pairs(rows, ["hate", "sexual"])                # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrail._exceptions import ConfigError
from guardrail._messages import Turn
from guardrail._policies import Stage

__all__ = [
    "DataSummary",
    "LabeledExample",
    "LabeledPair",
    "dataset_hash",
    "labeled_pairs",
    "load_labeled",
    "split_examples",
]


@dataclass(frozen=True, kw_only=True)
class LabeledExample:
    """One row: a turn to judge and its known 0/1 labels per policy."""

    id: str
    prompt: str
    response: str | None = None
    labels: Mapping[str, int] = field(default_factory=dict)

    @property
    def turn(self) -> Turn:
        return Turn(prompt=self.prompt, response=self.response)

    @property
    def stage(self) -> Stage:
        return self.turn.stage

    def messages(self) -> list[dict[str, str]]:
        """OpenAI-shaped messages, as a guard checks them."""
        items = [{"role": "user", "content": self.prompt}]
        if self.response is not None:
            items.append({"role": "assistant", "content": self.response})
        return items


@dataclass(frozen=True, kw_only=True)
class LabeledPair:
    """One training/evaluation item: an example judged against one policy."""

    example: LabeledExample
    policy: str
    label: int

    @property
    def stage(self) -> Stage:
        return self.example.stage


@dataclass(frozen=True, kw_only=True)
class DataSummary:
    """What a fit or an evaluation ran on, for model cards and calibration notes."""

    files: tuple[str, ...]
    sha256: str
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"files": list(self.files), "sha256": self.sha256, "rows": self.rows}


def _parse(line: str, where: str) -> LabeledExample:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    prompt, response, labels = data.get("prompt"), data.get("response"), data.get("labels")
    if not isinstance(prompt, str):
        raise ConfigError(f"{where}: 'prompt' must be a string, got {prompt!r}")
    if response is not None and not isinstance(response, str):
        raise ConfigError(f"{where}: 'response' must be a string or null, got {response!r}")
    if not isinstance(labels, dict):
        raise ConfigError(f"{where}: 'labels' must be an object of policy -> 0/1, got {labels!r}")
    for name, value in labels.items():
        if value not in (0, 1) or isinstance(value, float):
            raise ConfigError(f"{where}: labels.{name} must be 0 or 1, got {value!r}")
    return LabeledExample(
        id=str(data.get("id", where)), prompt=prompt, response=response,
        labels={k: int(v) for k, v in labels.items()},
    )


def load_labeled(paths: Sequence[str | os.PathLike[str]], *, limit: int | None = None) -> list[LabeledExample]:
    """Read labeled JSONL files in order (blank lines skipped); a bad row is a `ConfigError`."""
    if not paths:
        raise ConfigError("no labeled data files given")
    examples: list[LabeledExample] = []
    for path in paths:
        try:
            # JSON strings may hold U+2028 and friends raw: only "\n" ends a JSONL row
            lines = Path(path).read_text(encoding="utf-8").split("\n")
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such data file") from None
        for number, line in enumerate(lines, 1):
            if line.strip():
                examples.append(_parse(line, f"{path}:{number}"))
                if limit is not None and len(examples) >= limit:
                    return examples
    return examples


def dataset_hash(paths: Sequence[str | os.PathLike[str]]) -> DataSummary:
    """sha256 over the files' bytes in order, and the number of non-blank rows."""
    digest = hashlib.sha256()
    rows = 0
    for path in paths:
        data = Path(path).read_bytes()
        digest.update(data)
        rows += sum(1 for line in data.splitlines() if line.strip())
    return DataSummary(files=tuple(str(p) for p in paths), sha256=digest.hexdigest(), rows=rows)


def labeled_pairs(
    examples: Iterable[LabeledExample],
    policies: Sequence[str],
    *,
    stages: Iterable[Stage | str] = tuple(Stage),
) -> list[LabeledPair]:
    """Each example paired with each of `policies` it has a known label for, in stage `stages`."""
    wanted = {Stage(s) for s in stages}
    return [
        LabeledPair(example=ex, policy=name, label=ex.labels[name])
        for ex in examples
        if ex.stage in wanted
        for name in policies
        if name in ex.labels
    ]


def split_examples(
    examples: Sequence[LabeledExample], *, fraction: float, seed: int
) -> tuple[list[LabeledExample], list[LabeledExample]]:
    """A deterministic `(train, validation)` split; `fraction` of the rows go to validation.

    Splitting rows (not pairs) keeps every policy's view of one text on the same side.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"validation fraction must be in [0, 1), got {fraction!r}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    cut = round(len(examples) * fraction)
    held = set(order[:cut])
    train = [ex for i, ex in enumerate(examples) if i not in held]
    val = [ex for i, ex in enumerate(examples) if i in held]
    return train, val
