"""What the model reads: content normalised so that any Python `str` is scored, and scored fairly.

Two kinds of text would otherwise slip past a check. A lone surrogate (`"\\ud800"`) can't be
encoded, so the tokenizer fails and the policy's fail mode decides; and invisible characters
inside a word (`"bo\\u200bmb"`) split it into tokens the classifier does not recognise, dropping
its score. The guard scores `normalize_for_scoring(text)`; verdicts, audit records and
`Verdict.apply` keep the caller's original text.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import cache

from guardrail._messages import Turn

__all__ = ["normalize_for_scoring", "scoring_turn"]

_SURROGATE = re.compile("[\ud800-\udfff]")

# Default-ignorable code points outside category Cf: combining grapheme joiner, Hangul fillers,
# Khmer inherent vowels, Mongolian and standard variation selectors, and the whole tag /
# variation-selector-supplement plane block U+E0000-U+E0FFF.
_IGNORABLE = (
    (0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0xE0000, 0xE0FFF),
)


@cache
def _invisible() -> re.Pattern[str]:
    """Every format character (category Cf: zero-width space and joiners, bidi controls, soft
    hyphen, word joiner, BOM, ...) plus the ignorables above. Built on first use (~0.1 s), from
    this Python's Unicode database, so new format characters are covered as Python updates."""
    codes = {c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"}
    for first, last in _IGNORABLE:
        codes.update(range(first, last + 1))
    ranges: list[list[int]] = []
    for code in sorted(codes):
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return re.compile("[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in ranges) + "]")


def normalize_for_scoring(text: str) -> str:
    """The text the classifier sees. Pure; ASCII text comes back unchanged.

    1. Lone surrogates become U+FFFD (a valid surrogate pair becomes its character), so the text
       can be encoded and tokenized.
    2. Invisible characters are removed, not replaced by a space: a zero-width space inside a
       word joins the word back (`"bo\\u200bmb"` -> `"bomb"`). Newlines and tabs are kept.
    3. NFKC folds look-alike compatibility forms (fullwidth letters, ligatures, non-breaking
       spaces) into the plain characters the tokenizer knows.

    >>> normalize_for_scoring("bo\\u200bmb \\uff42\\uff4f\\uff4d\\uff42 \\ud800")
    'bomb bomb \\ufffd'
    """
    if text.isascii():
        return text
    if _SURROGATE.search(text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    text = _invisible().sub("", text)
    return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)


def scoring_turn(turn: Turn) -> Turn:
    """The turn with its prompt and response normalised for scoring."""
    response = None if turn.response is None else normalize_for_scoring(turn.response)
    return Turn(prompt=normalize_for_scoring(turn.prompt), response=response)
