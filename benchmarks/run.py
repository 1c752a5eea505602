"""Every benchmark in one run, printed as one table with the issue's targets beside the figures.

    GUARDRAIL_CACHE_DIR=... python benchmarks/run.py            # full: ~2,000-token "long" rows
    python benchmarks/run.py --quick                            # fewer repeats and calls, ~500-token "long"
    python benchmarks/run.py --only overhead,optimistic         # some sections only
    python benchmarks/run.py --threads 1                        # on a shared machine (see below)

Sections: scoring (head, N policies; from scoring.py), overhead (Guard, LangChain, OpenAI with
fakes), optimistic (sleep-based fakes through both adapters), throughput (concurrent checks,
batched vs unbatched), flops (scoring forward vs dense matmul), cold (cold start, peak RSS).
Model rows use the embedded Gemma 3 270M in bf16 on CPU. Rows print as each section finishes.

On a machine whose cores are busy with other work, torch's default one-thread-per-core turns
every op into a wait for a descheduled thread (forwards 5-30x slower); `--threads 1` keeps the
model rows meaningful there. On an idle machine leave the default.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SECTIONS = ("scoring", "overhead", "optimistic", "throughput", "flops", "cold")


@dataclass(frozen=True)
class Row:
    section: str
    figure: str
    measured: str
    target: str = ""
    met: bool | None = None


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# --- sections ----------------------------------------------------------------------------------
def scoring_section(scorer, quick: bool) -> list[Row]:  # noqa: ANN001
    import hardware
    import scoring

    repeats = 2 if quick else 5
    h = scoring.head_row(scorer, repeats)
    speed = h["naive_ms"] / h["head_ms"]
    request = scoring.requests_for(scoring.SHORT, 1)[0]
    naive_mib = hardware.peak_activation_mib(lambda: scoring.naive_score(scorer, request))
    scorer.share_prefix = False
    head_mib = hardware.peak_activation_mib(lambda: scorer.score([request]))
    rows = [
        Row("scoring", f"head: naive vs two-row, {h['tokens']} tok",
            f"{h['naive_ms']:.0f} / {h['head_ms']:.0f} ms = {speed:.2f}x", ">= 2.5x", speed >= 2.5),
        Row("scoring", "head: peak activation memory naive vs two-row",
            f"{naive_mib:.1f} / {head_mib:.1f} MiB = {naive_mib / head_mib:.0f}x", ">= 10x less",
            naive_mib / head_mib >= 10),
        Row("scoring", "head: logits materialised naive vs two-row",
            f"{h['naive_logits_bytes'] / 2**20:.0f} MiB / {h['head_logits_bytes']} B"),
        Row("scoring", "head: max |dP| naive vs two-row", f"{h['dp']:.1e}"),
    ]
    ns = (1, 4) if quick else (1, 4, 6)  # --quick: "long" is ~500 tokens, not ~2,000
    for r in scoring.policy_rows(scorer, repeats, ns=ns, long_repeat=15 if quick else 60):
        n, label = r["n"], r["content"]
        tokens = f"{r['prefix']}+{r['suffix']:.0f} tok"
        ratio_ideal = r["shared_ms"] / r["ideal_ms"]
        ratio_naive = r["naive_ms"] / r["shared_ms"]
        four = n == 4
        rows.append(Row("scoring", f"{label} N={n} ({tokens}): naive/separate/shared/ideal",
                        f"{r['naive_ms']:.0f}/{r['separate_ms']:.0f}/{r['shared_ms']:.0f}/{r['ideal_ms']:.0f} ms"))
        rows.append(Row("scoring", f"{label} N={n}: shared vs ideal", f"{ratio_ideal:.2f}x",
                        "<= 1.1x" if four else "", ratio_ideal <= 1.1 if four else None))
        rows.append(Row("scoring", f"{label} N={n}: naive / shared (max|dP| {r['dp']:.0e})", f"{ratio_naive:.2f}x",
                        ">= 3.5x" if four else "", ratio_naive >= 3.5 if four else None))
    return rows


def _overhead(label: str, guarded: list[float], bare: list[float] | None) -> list[Row]:
    def q(samples: list[float], p: float) -> float:
        ordered = sorted(samples)
        return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))] * 1000

    # Guarded quantile minus the bare median: the whole tail counts against the guard.
    base = q(bare, 0.5) if bare else 0.0
    p50, p99 = q(guarded, 0.5) - base, q(guarded, 0.99) - base
    return [
        Row("overhead", f"{label} p50", f"{p50:.3f} ms", "<= 0.3 ms", p50 <= 0.3),
        Row("overhead", f"{label} p99", f"{p99:.3f} ms", "<= 2 ms", p99 <= 2.0),
    ]


def overhead_section(quick: bool) -> list[Row]:
    import overhead_langchain as olc
    import overhead_openai as ooa
    from guardrail import Guard
    from guardrail.testing import KeywordScorer
    from guardrail_langchain import GuardedChatModel
    from guardrail_langchain.testing import ScriptedChatModel
    from guardrail_openai import GuardedOpenAI
    from guardrail_openai.testing import FakeOpenAI

    calls = 300 if quick else 2000
    guard = Guard(["dangerous", "hate"], scorer=KeywordScorer({"bomb": 0.99}))
    turn = [*ooa.MESSAGES, {"role": "assistant", "content": olc.TEXT}]

    def both_checks() -> None:
        guard.check_input(ooa.MESSAGES)
        guard.check_output(turn)

    rows = _overhead("Guard alone (input+output check)", olc.time_sync(both_checks, calls), None)
    model = ScriptedChatModel(responses=[olc.TEXT])
    wrapped = GuardedChatModel(chat_model=model, guard=guard)
    bare = olc.time_sync(lambda: model.invoke("How do I bake bread?"), calls)
    rows += _overhead("LangChain GuardedChatModel.invoke", olc.time_sync(lambda: wrapped.invoke("How do I bake bread?"), calls), bare)
    server = FakeOpenAI(ooa.REPLY)
    client = server.client()
    base, guarded = ooa._time_sync(ooa._sync_call(client, "chat", False),
                                   ooa._sync_call(GuardedOpenAI(client, guard), "chat", False), calls)
    rows += _overhead("OpenAI chat.completions.create", guarded, base)
    base, guarded = ooa._time_sync(ooa._sync_call(client, "chat", True),
                                   ooa._sync_call(GuardedOpenAI(client, guard), "chat", True), calls // 2)
    rows += _overhead("OpenAI chat stream (hold, every 200)", guarded, base)
    return rows


def optimistic_section(quick: bool) -> list[Row]:
    import optimistic

    rows = []
    for r in optimistic.optimistic_rows(check=0.2, generation=0.2, repeats=3 if quick else 7):
        ratio = r["optimistic"] / r["ideal"]
        rows.append(Row("optimistic", f"{r['adapter']} {r['how']} (sequential {r['sequential'] * 1000:.0f} ms)",
                        f"{r['optimistic'] * 1000:.0f} ms = {ratio:.3f}x max", "<= 1.05x max", ratio <= 1.05))
    return rows


def throughput_section(scorer, quick: bool) -> list[Row]:  # noqa: ANN001
    import throughput

    rows = []
    for policies in (1, 4):
        for r in throughput.throughput_rows(scorer, min_checks=8 if quick else 16, policies=policies):
            ratio = r["batched"] / r["unbatched"]
            rows.append(Row("throughput", f"{policies} polic{'y' if policies == 1 else 'ies'}, {r['concurrency']:>2} concurrent, "
                            f"{r['checks']} checks: unbatched / batched",
                            f"{r['unbatched']:.1f} / {r['batched']:.1f} checks/s = {ratio:.2f}x (max|dP| {r['dp']:.0e})"))
    return rows


def flops_section(scorer, quick: bool) -> list[Row]:  # noqa: ANN001
    import hardware
    import scoring
    import torch
    from guardrail.classifier import encode_request

    peak = hardware.matmul_rate(torch.bfloat16, repeats=3 if quick else 5)
    rows = [Row("flops", "dense bf16 matmul 2048^3 (the limit)", f"{peak / 1e9:.0f} GFLOP/s")]
    for label, text in (("short", scoring.SHORT), ("long", scoring.PARAGRAPH * (15 if quick else 60))):
        request = scoring.requests_for(text, 1)[0]
        ids = encode_request(scorer.tokenizer, request, scorer._control_ids)
        seconds, rate = hardware.forward_rate(scorer, ids, repeats=2 if quick else 3)
        share = rate / peak
        flops = hardware.forward_flops(scorer.model, len(ids))
        rows.append(Row("flops", f"scoring forward, {label} prompt {len(ids)} tok ({flops / 1e9:.1f} GFLOP)",
                        f"{seconds * 1000:.0f} ms, {rate / 1e9:.0f} GFLOP/s = {share:.0%}", ">= 50 %", share >= 0.5))
    return rows


def cold_section() -> list[Row]:
    import hardware

    c = hardware.cold_start()
    return [
        Row("cold", "`guardrail check` cold start (cache present)", f"{c['check_s']:.1f} s"),
        Row("cold", "`guardrail check` peak RSS", f"{c['check_rss_mib']:.0f} MiB"),
        Row("cold", "`import guardrail` (no torch)", f"{c['import_s'] * 1000:.0f} ms, {c['import_rss_mib']:.0f} MiB"),
        Row("cold", "`import torch, transformers` alone", f"{c['torch_import_s']:.1f} s"),
    ]


# --- table -------------------------------------------------------------------------------------
WIDTHS = (10, 60, 40, 12, 3)
LINE = "  ".join(f"{{:<{w}}}" for w in WIDTHS)


def print_header() -> None:
    print(LINE.format("section", "figure", "measured", "target", "met"))
    print("  ".join("-" * w for w in WIDTHS), flush=True)


def print_rows(rows: list[Row]) -> None:
    """Rows print as each section finishes, so a long run shows progress; one table in the end."""
    previous = None
    for r in rows:
        print(LINE.format(r.section if r.section != previous else "", r.figure, r.measured, r.target,
                          _met(r.met)).rstrip(), flush=True)
        previous = r.section


def _met(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "NO")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and calls")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections: {', '.join(unknown)}")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    scorer = None
    if {"scoring", "throughput", "flops"} & set(chosen):
        from guardrail import TransformersScorer
        from guardrail.classifier import embedded_model_path

        torch.manual_seed(0)
        scorer = TransformersScorer.from_pretrained(str(embedded_model_path(progress=True)), dtype="bfloat16")
    runs: dict[str, Callable[[], list[Row]]] = {
        "scoring": lambda: scoring_section(scorer, args.quick),
        "overhead": lambda: overhead_section(args.quick),
        "optimistic": lambda: optimistic_section(args.quick),
        "throughput": lambda: throughput_section(scorer, args.quick),
        "flops": lambda: flops_section(scorer, args.quick),
        "cold": cold_section,
    }

    print(f"guardrail benchmarks{' (--quick)' if args.quick else ''}: {_cpu()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}; "
          f"model rows: embedded Gemma 3 270M, bf16")
    load_before = os.getloadavg()
    started = time.perf_counter()
    print(f"load average (1 min) {load_before[0]:.1f} at the start\n")
    print_header()
    rows: list[Row] = []
    seconds: dict[str, float] = {}
    for name in SECTIONS:
        if name in chosen:
            start = time.perf_counter()
            section = runs[name]()
            seconds[name] = time.perf_counter() - start
            print_rows(section)
            rows += section
    load_after = os.getloadavg()
    print(f"\nload average (1 min) {load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end; "
          f"{time.perf_counter() - started:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())})")
    if not torch.cuda.is_available():
        print("No GPU rows: no accelerator was available to this run (the ShieldGemma-shape GPU targets are unmeasured).")
    missed = [r for r in rows if r.met is False]
    if missed:
        print(f"{len(missed)} target(s) missed.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
