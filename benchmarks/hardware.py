"""The physical limit and the fixed costs: achieved FLOP/s of the scoring forward against the
machine's dense matmul FLOP/s in the same dtype, and cold start / peak RSS of the embedded default.

    python benchmarks/hardware.py

FLOPs of one scoring forward over T tokens (useful work; multiply-add = 2 FLOPs):

    2 * P_linear * T                                   every Linear in the decoder layers
  + sum over layers of 4 * H * d * sum_i ctx_i          QK^T and AV: query i attends ctx_i keys
  + 2 * hidden * 2                                     the two-row Yes/No head at one position

with ctx_i = i + 1 for global layers and min(i + 1, window) for sliding-window layers, H query
heads of size d. Embedding lookups, norms, rotary and softmax are not counted (they are not
FLOPs a matmul unit could do, and are < 1 % here). Masked-out scores that an implementation
computes anyway are not counted either: this is the work the answer needs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["cold_start", "forward_flops", "forward_rate", "matmul_rate", "peak_activation_mib"]


def forward_flops(model: Any, tokens: int) -> int:
    """Useful FLOPs of one decoder forward over `tokens` tokens plus the two-row head."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers = model.get_base_model().model.layers if hasattr(model, "get_base_model") else model.model.layers
    linear = sum(m.weight.numel() for m in layers.modules() if isinstance(m, torch.nn.Linear))
    heads, head_dim = config.num_attention_heads, config.head_dim
    window = getattr(config, "sliding_window", None)
    kinds = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    attention = 0
    for kind in kinds:
        if kind == "sliding_attention" and window:
            keys = sum(min(i + 1, window) for i in range(tokens))
        else:
            keys = tokens * (tokens + 1) // 2
        attention += 4 * heads * head_dim * keys
    return 2 * linear * tokens + attention + 2 * config.hidden_size * 2


def matmul_rate(dtype: torch.dtype = torch.bfloat16, *, n: int = 2048, repeats: int = 5) -> float:
    """Dense FLOP/s of `torch.matmul` on two n x n matrices (median of `repeats`)."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.matmul(a, b)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def forward_rate(scorer: Any, ids: list[int], *, repeats: int = 3) -> tuple[float, float]:
    """(seconds, FLOP/s) of the scorer's own forward (decoder + two-row head) on one prompt."""
    scorer._p_yes([ids])  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        scorer._p_yes([ids])
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return seconds, forward_flops(scorer.model, len(ids)) / seconds


def peak_activation_mib(fn: Callable[[], object]) -> float:
    """Peak CPU memory allocated by torch while `fn` runs (weights excluded), in MiB.

    From the profiler's allocation records: each op's own allocations (net of its own frees)
    and the frees outside ops, in time order; the peak of the running sum.
    """
    fn()  # warm-up: one-off allocations (caches, workspaces) don't count
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    timeline = []
    for event in prof.events():
        if event.name == "[memory]":
            timeline.append((event.time_range.start, event.cpu_memory_usage))
        elif event.self_cpu_memory_usage:
            timeline.append((event.time_range.start, event.self_cpu_memory_usage))
    running = peak = 0
    for _, delta in sorted(timeline, key=lambda item: item[0]):
        running += delta
        peak = max(peak, running)
    return peak / 2**20


_CHILD = textwrap.dedent("""
    import resource, subprocess, sys, time
    start = time.perf_counter()
    code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    seconds = time.perf_counter() - start
    print(code, seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
""")


def _measure(command: list[str], env: dict[str, str]) -> tuple[int, float, float]:
    """Exit code, wall seconds and peak RSS (MiB) of `command`, run from a fresh parent."""
    out = subprocess.run([sys.executable, "-c", _CHILD, *command], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return int(out[0]), float(out[1]), int(out[2]) / 1024  # ru_maxrss is in KiB on Linux


def cold_start(*, text: str = "How do I bake bread?") -> dict[str, float]:
    """`guardrail check TEXT` in a fresh process with the model cache present, and a bare import."""
    env = dict(os.environ)
    code, seconds, rss = _measure([sys.executable, "-m", "guardrail", "check", text], env)
    if code not in (0, 1):
        raise RuntimeError(f"guardrail check exited with {code}")
    _, import_s, import_rss = _measure([sys.executable, "-c", "import guardrail"], env)
    _, torch_s, _ = _measure([sys.executable, "-c", "import torch, transformers"], env)
    return {"check_s": seconds, "check_rss_mib": rss, "import_s": import_s,
            "import_rss_mib": import_rss, "torch_import_s": torch_s}


def main() -> int:
    from guardrail import TransformersScorer
    from guardrail.classifier import embedded_model_path, encode_prompt

    peak = matmul_rate()
    print(f"dense bf16 matmul 2048^3: {peak / 1e9:.0f} GFLOP/s ({torch.get_num_threads()} threads)")
    scorer = TransformersScorer.from_pretrained(str(embedded_model_path()), dtype="bfloat16")
    for words in (40, 1500):
        ids = encode_prompt(scorer.tokenizer, "word " * words)
        seconds, rate = forward_rate(scorer, ids)
        print(f"forward {len(ids)} tokens: {seconds * 1000:.0f} ms, {forward_flops(scorer.model, len(ids)) / 1e9:.1f} "
              f"GFLOP, {rate / 1e9:.0f} GFLOP/s = {rate / peak:.0%} of matmul")
    cold = cold_start()
    print(f"cold start `guardrail check`: {cold['check_s']:.1f} s, peak RSS {cold['check_rss_mib']:.0f} MiB; "
          f"`import guardrail` {cold['import_s']:.2f} s; `import torch, transformers` {cold['torch_import_s']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
