"""Training steps that read each row's prefix once, as the scorer does, with gradients.

A row is one text judged against every policy it has a label for. Its prompts differ only after
the content (the guideline and the question), so a step prefills `BOS + preamble + content` once
per row and runs the policies' suffixes as one batch over copies of that cache. The loss and its
gradients are those of the separate prompts (tested to 1e-4 in fp32): only the arithmetic is
shared.

Steps are built from whole rows, about `batch_size` pairs each, from rows of similar length, and
split into micro-batches of at most `max_tokens` padded tokens whose gradients are accumulated,
so peak memory is bounded by `max_tokens`, whatever the row lengths.

Heavy imports (torch, transformers) happen inside the functions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from guardrail._data import LabeledPair
from guardrail._policies import Policy
from guardrail._scoring import ScoreRequest

__all__ = ["Row", "encode_rows", "plan_epoch", "step_loss"]


@dataclass(frozen=True)
class Row:
    """One text's shared prefix, one suffix per labeled policy, and the labels (1 = violates)."""

    prefix: tuple[int, ...]
    suffixes: tuple[tuple[int, ...], ...]
    labels: tuple[int, ...]

    @property
    def pairs(self) -> int:
        return len(self.suffixes)

    @property
    def length(self) -> int:
        """The longest of its prompts, in tokens."""
        return len(self.prefix) + max(len(s) for s in self.suffixes)


def encode_rows(
    tokenizer: Any,
    pairs: Sequence[LabeledPair],
    policies: dict[str, Policy],
    controls: frozenset[int],
    *,
    max_length: int,
) -> tuple[list[Row], int]:
    """Group `pairs` by text and encode each group as one `Row`; returns (rows, pairs skipped).

    Pairs whose prompt is over `max_length` tokens are skipped, as the separate-prompt trainer
    did. The prefix/suffix cut is where the prompts for two different guidelines part, so a row
    with one policy cuts where a row with four would.
    """
    from guardrail._tokens import encode_request
    from guardrail._transformers import _common_prefix

    groups: dict[tuple[str, str | None], list[LabeledPair]] = {}
    for pair in pairs:
        groups.setdefault((pair.example.prompt, pair.example.response), []).append(pair)
    names = sorted(policies)
    rows: list[Row] = []
    skipped = 0
    for group in groups.values():
        turn, stage = group[0].example.turn, group[0].stage
        seen: dict[str, int] = {}
        for pair in group:  # a text repeated with the same policy keeps its first label
            seen.setdefault(pair.policy, pair.label)
        encoded = {
            name: encode_request(tokenizer, ScoreRequest(turn=turn, guideline=policies[name].guideline(stage),
                                                         policy=name), controls)
            for name in seen
        }
        kept = [name for name in seen if len(encoded[name]) <= max_length]
        skipped += len(seen) - len(kept)
        if not kept:
            continue
        probes = [encoded[n] for n in kept]
        other = next((n for n in names if n not in kept), None)
        if len(probes) == 1 and other is not None:
            probes.append(encode_request(tokenizer, ScoreRequest(turn=turn, guideline=policies[other].guideline(stage),
                                                                 policy=other), controls))
        cut = _common_prefix(probes)
        rows.append(Row(
            prefix=tuple(encoded[kept[0]][:cut]),
            suffixes=tuple(tuple(encoded[n][cut:]) for n in kept),
            labels=tuple(seen[n] for n in kept),
        ))
    return rows, skipped


def plan_epoch(rows: Sequence[Row], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Steps of row indices: shuffled, sorted by length within windows of 16 steps, then shuffled.

    A step takes whole rows until it holds at least `batch_size` pairs (a row is never split).
    """
    order = list(range(len(rows)))
    rng.shuffle(order)
    steps: list[list[int]] = []
    window = batch_size * 16
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: rows[i].length)
        current: list[int] = []
        held = 0
        for i in chunk:
            current.append(i)
            held += rows[i].pairs
            if held >= batch_size:
                steps.append(current)
                current, held = [], 0
        if current:
            steps.append(current)
    rng.shuffle(steps)
    return steps


def micro_batches(rows: Sequence[Row], step: list[int], max_tokens: int) -> list[list[int]]:
    """The step's rows cut into runs whose padded prefix and suffix tokens stay under `max_tokens`."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in sorted(step, key=lambda i: len(rows[i].prefix)):
        trial = current + [i]
        prefix = len(trial) * max(len(rows[j].prefix) for j in trial)
        suffix = sum(rows[j].pairs for j in trial) * max(len(s) for j in trial for s in rows[j].suffixes)
        if current and prefix + suffix > max_tokens:
            batches.append(current)
            current = [i]
        else:
            current = trial
    if current:
        batches.append(current)
    return batches


@dataclass(frozen=True)
class Head:
    """How the answer logits are read: the model's output rows, which of them, any softcap."""

    weight: Any
    rows: Any  # None: the whole vocabulary
    softcap: float | None
    pad_id: int


def _logits(model: Any, decoder: Any, cache_arg: str, head: Head, batch: Sequence[Row]) -> Any:
    """Answer logits for every (row, policy) pair of `batch`, in order, with gradients."""
    import torch
    from transformers import DynamicCache

    from guardrail._transformers import padded

    device = head.weight.device
    if all(r.pairs == 1 for r in batch):  # nothing to share: one forward of the whole prompts
        flat = [list(r.prefix + r.suffixes[0]) for r in batch]
        input_ids, mask = padded(flat, head.pad_id)
        hidden = decoder(input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False).last_hidden_state
        return _read(hidden, flat, head)
    prefix_ids, prefix_mask = padded([list(r.prefix) for r in batch], head.pad_id, left=True)
    owners = torch.tensor([n for n, r in enumerate(batch) for _ in r.suffixes])
    flat = [list(s) for r in batch for s in r.suffixes]
    suffix_ids, suffix_mask = padded(flat, head.pad_id)
    lengths = torch.tensor([len(r.prefix) for r in batch])
    cache = DynamicCache(config=model.config)
    decoder(
        input_ids=prefix_ids.to(device), attention_mask=prefix_mask.to(device),
        position_ids=(prefix_mask.cumsum(-1) - 1).clamp(min=0).to(device),
        use_cache=True, **{cache_arg: cache},
    )
    if len(flat) > len(batch):
        cache.batch_select_indices(owners.to(device))
    hidden = decoder(
        input_ids=suffix_ids.to(device),
        attention_mask=torch.cat([prefix_mask[owners], suffix_mask], dim=1).to(device),
        position_ids=(lengths[owners, None] + torch.arange(suffix_ids.shape[1])).to(device),
        use_cache=True, **{cache_arg: cache},
    ).last_hidden_state
    return _read(hidden, flat, head)


def _read(hidden: Any, flat: list[list[int]], head: Head) -> Any:
    """The answer logits at each sequence's last real position."""
    import torch

    from guardrail._transformers import answer_logits

    last = torch.tensor([len(s) - 1 for s in flat], device=hidden.device)
    final = hidden[torch.arange(len(flat), device=hidden.device), last]
    return answer_logits(final, head.weight if head.rows is None else head.weight[head.rows], head.softcap)


def step_loss(
    model: Any, decoder: Any, cache_arg: str, head: Head, rows: Sequence[Row], step: list[int], *,
    targets: tuple[int, int], max_tokens: int,
) -> float:
    """Mean cross-entropy over the step's pairs; gradients are accumulated by micro-batch.

    `targets` are the class indices of (Yes, No) in the logits `head` reads.
    """
    import torch

    total = sum(rows[i].pairs for i in step)
    value = 0.0
    for batch in micro_batches(rows, step, max_tokens):
        chosen = [rows[i] for i in batch]
        logits = _logits(model, decoder, cache_arg, head, chosen)
        labels = torch.tensor([targets[0] if y else targets[1] for r in chosen for y in r.labels],
                              device=logits.device)
        loss = torch.nn.functional.cross_entropy(logits, labels, reduction="sum") / total
        loss.backward()
        value += loss.item()
    return value
