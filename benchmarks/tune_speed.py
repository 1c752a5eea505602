"""Training speed of `guardrail tune`, side by side: the trainer as it was vs the shared-prefix one.

    python benchmarks/tune_speed.py --data /tmp/mix/train.jsonl --pairs 400

Both read the same pairs (the first `--pairs` of a seeded shuffle of the data's (row, policy)
pairs, whole rows) on the embedded model in bf16, one after the other in fresh processes, and
run a fixed number of optimizer steps of `batch_size` pairs each:

- `separate` (the trainer up to 38f296b): every pair is its own prompt; batches of similar
  length, right-padded; the LoRA adapter computes in fp32, as peft makes it;
- `shared`: each row's prefix is prefilled once and its policies' suffixes run over it; steps of
  whole rows, micro-batches bounded by `max_tokens`; the adapter computes in bf16 with fp32
  master weights.

Prints pairs/s, prompt tokens/s and peak RSS of each, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

POLICIES = ("dangerous", "harassment", "hate", "sexual")


def _pairs(data: str, n: int, seed: int) -> list:
    from guardrail._data import labeled_pairs, load_labeled

    rows = load_labeled([data])
    random.Random(seed).shuffle(rows)
    chosen, count = [], 0
    for row in rows:
        if count >= n:
            break
        pairs = labeled_pairs([row], POLICIES)
        chosen += pairs
        count += len(pairs)
    return chosen


def _separate(model, scorer, pairs, policies, batch_size: int) -> tuple[int, int]:
    """The old step: one padded forward per batch of separate prompts (as in `_tune` at 38f296b)."""
    import torch

    from guardrail._tokens import control_token_ids, encode_request
    from guardrail._transformers import _decoder, padded
    from guardrail._tune import _requests

    controls = control_token_ids(scorer.tokenizer)
    items = [(encode_request(scorer.tokenizer, r, controls), p.label)
             for r, p in zip(_requests(pairs, policies), pairs)]
    items.sort(key=lambda item: len(item[0]))
    rng = random.Random(0)
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    rng.shuffle(batches)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5e-4)
    head = model.get_output_embeddings().weight
    decoder = _decoder(model)
    model.train()
    for batch in batches:
        input_ids, mask = padded([ids for ids, _ in batch], scorer.pad_id)
        hidden = decoder(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
        final = hidden[torch.arange(len(batch)), mask.sum(-1) - 1]
        logits = (final.to(head.dtype) @ head.T).float()
        targets = torch.tensor([scorer.yes_id if y else scorer.no_id for _, y in batch])
        loss = torch.nn.functional.cross_entropy(logits, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return len(items), sum(len(ids) for ids, _ in items)


def _shared(model, scorer, pairs, policies, batch_size: int, max_tokens: int) -> tuple[int, int]:
    import torch

    from guardrail._tokens import control_token_ids
    from guardrail._transformers import _decoder, cache_argument
    from guardrail._tune import _compute_weights, _push, _resolve_base_dtype
    from guardrail._tune_steps import Head, encode_rows, plan_epoch, step_loss

    rows, _ = encode_rows(scorer.tokenizer, pairs, policies, control_token_ids(scorer.tokenizer), max_length=1024)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.to(_resolve_base_dtype(model))
    weights = _compute_weights(params)
    optimizer = torch.optim.AdamW(weights, lr=5e-4)
    decoder = _decoder(model)
    head = Head(weight=model.get_output_embeddings().weight, rows=None, softcap=None, pad_id=scorer.pad_id)
    model.train()
    for step in plan_epoch(rows, batch_size, random.Random(0)):
        for w in (*params, *weights):
            w.grad = None
        step_loss(model, decoder, cache_argument(decoder), head, rows, step,
                  targets=(scorer.yes_id, scorer.no_id), max_tokens=max_tokens)
        for p, w in zip(params, weights):
            w.grad = p.grad.float()
        optimizer.step()
        _push(params, weights)
    tokens = sum(len(r.prefix) * r.pairs + sum(len(s) for s in r.suffixes) for r in rows)
    return sum(r.pairs for r in rows), tokens


def _child(args: argparse.Namespace) -> None:
    from guardrail._policies import resolve_policies
    from guardrail._tune import TuneOptions, _load

    policies = {p.name: p for p in resolve_policies(list(POLICIES))}
    model, scorer, _ = _load("embedded", TuneOptions())
    pairs = _pairs(args.data, args.pairs, args.seed)
    started = time.perf_counter()
    if args.mode == "separate":
        n, tokens = _separate(model, scorer, pairs, policies, args.batch_size)
    else:
        n, tokens = _shared(model, scorer, pairs, policies, args.batch_size, args.max_tokens)
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(json.dumps({"mode": args.mode, "pairs": n, "tokens": tokens, "seconds": seconds, "rss_gb": rss}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).parent.parent / "scripts/data/handwritten_v2.jsonl"))
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", choices=["separate", "shared"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        _child(args)
        return
    results = {}
    for mode in ("separate", "shared"):
        line = subprocess.run(
            [sys.executable, __file__, "--mode", mode, "--data", args.data, "--pairs", str(args.pairs),
             "--batch-size", str(args.batch_size), "--max-tokens", str(args.max_tokens), "--seed", str(args.seed)],
            check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
        results[mode] = json.loads(line)
    print(f"{results['shared']['pairs']} pairs of {args.data}, batch {args.batch_size}, embedded model in bf16\n")
    print("| trainer | pairs/s | prompt tokens/s | peak RSS |\n|---|---|---|---|")
    for mode, r in results.items():
        print(f"| {mode} | {r['pairs'] / r['seconds']:.2f} | {r['tokens'] / r['seconds']:.0f} | {r['rss_gb']:.1f} GB |")
    a, b = results["separate"], results["shared"]
    print(f"\nshared / separate: {(b['pairs'] / b['seconds']) / (a['pairs'] / a['seconds']):.2f}x pairs/s")


if __name__ == "__main__":
    main()
