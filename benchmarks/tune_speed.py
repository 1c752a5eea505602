"""Training speed of `guardrail tune`, side by side: the trainer as it was vs the one that ships.

    python benchmarks/tune_speed.py --data /tmp/mix/train.jsonl --pairs 400

Both train one epoch over the same rows (a seeded sample holding about `--pairs` (row, policy)
pairs) on the embedded model in bf16, LoRA r=8 on q/v, batch 8, one after the other in fresh
processes, each timed from model load to the last optimizer step:

- `separate` (the trainer up to 38f296b, rebuilt here from public pieces): every pair is its own
  prompt; batches of similar length, right-padded; the adapter computes in fp32, as peft makes it;
- `shared` (`guardrail.classifier.tune`): each row's prefix is prefilled once and its policies'
  suffixes run over it; steps of whole rows, micro-batches bounded by `--max-tokens`; the adapter
  computes in bf16 with fp32 master weights.

Prints pairs/s, prompt tokens/s (every pair's whole prompt counted, shared or not) and peak RSS of
each, the ratio, and the data's pairs per row: sharing saves more the more policies a row has.
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

from guardrail import BUILTIN_POLICIES, ScoreRequest
from guardrail.classifier import LabeledPair, labeled_pairs, load_labeled

POLICIES = ("dangerous", "harassment", "hate", "sexual")


def _rows(data: str, n: int, seed: int) -> list:
    rows = [r for r in load_labeled([data]) if labeled_pairs([r], POLICIES)]
    random.Random(seed).shuffle(rows)
    chosen, count = [], 0
    for row in rows:
        if count >= n:
            break
        chosen.append(row)
        count += len(labeled_pairs([row], POLICIES))
    return chosen


def _separate(rows: list, batch_size: int) -> tuple[int, int]:
    """The old trainer's epoch: one padded forward per batch of separate prompts."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from guardrail.classifier import answer_token_ids, control_token_ids, embedded_model_path, encode_request

    path = str(embedded_model_path(progress=False))
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    yes, no = answer_token_ids(tokenizer)
    controls = control_token_ids(tokenizer)
    pairs: list[LabeledPair] = labeled_pairs(rows, POLICIES)
    items = [(encode_request(tokenizer, ScoreRequest(turn=p.example.turn, guideline=BUILTIN_POLICIES[p.policy]
                                                     .guideline(p.stage), policy=p.policy), controls), p.label)
             for p in pairs]
    items.sort(key=lambda item: len(item[0]))
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    random.Random(0).shuffle(batches)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4)
    head = model.get_output_embeddings().weight
    decoder = model.get_base_model().model
    model.train()
    for batch in batches:
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.tensor([ids + [0] * (width - len(ids)) for ids, _ in batch])
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
        hidden = decoder(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
        logits = (hidden[torch.arange(len(batch)), mask.sum(-1) - 1] @ head.T).float()
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([yes if y else no for _, y in batch]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return len(items), sum(len(ids) for ids, _ in items)


def _shared(rows: list, batch_size: int, max_tokens: int, out: Path) -> int:
    from guardrail.classifier import RunOptions, TuneOptions, tune

    options = TuneOptions(epochs=1, batch_size=batch_size, learning_rate=5e-4)
    result = tune("embedded", rows, validation=[], out_dir=out, policies=list(POLICIES), options=options,
                  progress=False, run=RunOptions(checkpoint_every=None, max_tokens=max_tokens))
    return result.train_pairs


def _child(args: argparse.Namespace) -> None:
    import tempfile

    rows = _rows(args.data, args.pairs, args.seed)
    started = time.perf_counter()
    if args.mode == "separate":
        n, tokens = _separate(rows, args.batch_size)
    else:
        with tempfile.TemporaryDirectory() as out:
            n = _shared(rows, args.batch_size, args.max_tokens, Path(out))
        tokens = None
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(json.dumps({"mode": args.mode, "pairs": n, "rows": len(rows), "tokens": tokens, "seconds": seconds,
                      "rss_gb": rss}))


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
    a, b = results["separate"], results["shared"]
    print(f"{a['pairs']} pairs ({a['pairs'] / a['rows']:.2f} per row) of {args.data}, batch {args.batch_size}, "
          "embedded model in bf16, one epoch from model load\n")
    print("| trainer | pairs/s | prompt tokens/s | peak RSS |\n|---|---|---|---|")
    for mode, r in results.items():
        tokens = r["tokens"] or a["tokens"]  # the same prompts, counted whole
        print(f"| {mode} | {r['pairs'] / r['seconds']:.2f} | {tokens / r['seconds']:.0f} | {r['rss_gb']:.1f} GB |")
    print(f"\nshared / separate: {(b['pairs'] / b['seconds']) / (a['pairs'] / a['seconds']):.2f}x pairs/s")


if __name__ == "__main__":
    main()
