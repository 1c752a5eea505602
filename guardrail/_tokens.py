"""Prompt text to token ids, without torch: shared by the local and the remote scorers."""

from __future__ import annotations

import re
import threading
from typing import Any

from guardrail._exceptions import ConfigError
from guardrail._prompts import content_spans
from guardrail._scoring import ScoreRequest

__all__ = ["answer_token_ids", "control_token_ids", "encode_prompt", "encode_request"]

_SURROGATE = re.compile("[\ud800-\udfff]")
# A transformers tokenizer keeps `split_special_tokens` as a switch on its shared backend and
# flips it per call, so two threads encoding at once can read each other's setting: a thread
# escaping typed control tokens would split another's scaffold. Every encode here holds this lock
# (encoding takes milliseconds; the forwards it feeds take far longer).
_ENCODING = threading.Lock()


def _encode(tokenizer: Any, text: str, **options: Any) -> Any:
    with _ENCODING:
        return tokenizer(text, add_special_tokens=False, **options)


def answer_token_ids(tokenizer: Any, yes: str = "Yes", no: str = "No") -> tuple[int, int]:
    """The ids of the answer tokens, each of which must be a single vocabulary token."""
    ids = []
    for word in (yes, no):
        encoded = _encode(tokenizer, word)["input_ids"]
        token_id = tokenizer.convert_tokens_to_ids(word)
        if len(encoded) != 1 or encoded[0] != token_id or token_id == tokenizer.unk_token_id:
            raise ConfigError(
                f"the tokenizer has no single token {word!r} (it encodes as {encoded}); "
                "P(Yes) needs the answer words to be single tokens"
            )
        ids.append(token_id)
    return ids[0], ids[1]


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids for a rendered prompt: exactly one BOS, then the text (no second BOS)."""
    return [tokenizer.bos_token_id, *_encode(tokenizer, prompt)["input_ids"]]


def control_token_ids(tokenizer: Any) -> frozenset[int]:
    """Ids that content must never produce: special tokens and tag-shaped added tokens.

    Tag-shaped (`<...>`) catches tokens some tokenizers don't flag as special, such as Gemma 3's
    `<start_of_image>` when rebuilt from GGUF; whitespace added tokens (`\\n\\n`) are not controls.
    """
    added = getattr(tokenizer, "added_tokens_decoder", {})
    tags = {
        i for i, t in added.items()
        if getattr(t, "special", False) or (str(t).startswith("<") and str(t).endswith(">"))
    }
    return frozenset(tags) | frozenset(tokenizer.all_special_ids)


def encode_request(tokenizer: Any, request: ScoreRequest, control_ids: frozenset[int]) -> list[int]:
    """Like `encode_prompt`, but control tokens typed inside the content become plain text.

    The scaffolding's own `<start_of_turn>`/`<end_of_turn>` stay control tokens. Content without
    control tokens (nearly all of it) encodes exactly as `apply_chat_template` would. Any `str`
    encodes: surrogates (which a guard's normalisation already removed) become U+FFFD, one
    character each, so the content spans stay put.
    """
    text = _SURROGATE.sub("\ufffd", request.prompt)
    encoded = _encode(tokenizer, text, return_offsets_mapping=True)
    spans = content_spans(request.turn)
    ids = [tokenizer.bos_token_id]
    for token, (start, end) in zip(encoded["input_ids"], encoded["offset_mapping"]):
        if token in control_ids and any(a <= start and end <= b for a, b in spans):
            ids += _as_plain_text(tokenizer, text[start:end], control_ids)
        else:
            ids.append(token)
    return ids


def _as_plain_text(tokenizer: Any, text: str, control_ids: frozenset[int]) -> list[int]:
    """Tokens for `text` with no control token among them.

    `split_special_tokens` covers tokens flagged special; added tokens that are not (Gemma 3's
    `<start_of_image>` from GGUF) still match whole, so split the first character off and retry.
    """
    ids = _encode(tokenizer, text, split_special_tokens=True)["input_ids"]
    if len(text) <= 1 or control_ids.isdisjoint(ids):
        return ids
    head = _encode(tokenizer, text[0], split_special_tokens=True)["input_ids"]
    return head + _as_plain_text(tokenizer, text[1:], control_ids)
