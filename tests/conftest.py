"""Tiny randomly initialised Gemma 2 / Gemma 3 models (the real tokenizer is in the root conftest).

The tiny models keep the families' structure (Gemma 2: alternating sliding/global
layers and both softcaps; Gemma 3: 5:1 sliding/global, no softcapping) at a size that runs in
milliseconds, with the real 262144-token vocabulary so the real tokenizer drives them.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def _tiny(family: str, vocab_size: int):  # noqa: ANN202
    import torch

    torch.manual_seed(0)
    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        query_pre_attn_scalar=32,
        sliding_window=24,  # shorter than the prompts, so the sliding layers matter
        max_position_embeddings=4096,
        initializer_range=0.3,  # large enough that P(Yes) spreads away from 0.5
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    if family == "gemma2":
        from transformers import Gemma2Config, Gemma2ForCausalLM

        config = Gemma2Config(
            num_hidden_layers=4, attn_logit_softcapping=50.0, final_logit_softcapping=30.0, **common
        )
        return Gemma2ForCausalLM(config)
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(num_hidden_layers=6, **common)
    return Gemma3ForCausalLM(config)


def _saved_tiny(family: str, factory: pytest.TempPathFactory, tokenizer) -> Path:  # noqa: ANN001
    path = factory.mktemp(f"tiny-{family}")
    _tiny(family, len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session", params=["gemma2", "gemma3"])
def tiny_model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, gemma3_tokenizer) -> Path:  # noqa: ANN001
    """A saved tiny model plus the real tokenizer, loadable by `from_pretrained(path)`."""
    return _saved_tiny(request.param, tmp_path_factory, gemma3_tokenizer)


@pytest.fixture(scope="session")
def tiny_gemma2_dir(tmp_path_factory: pytest.TempPathFactory, gemma3_tokenizer) -> Path:  # noqa: ANN001
    return _saved_tiny("gemma2", tmp_path_factory, gemma3_tokenizer)
