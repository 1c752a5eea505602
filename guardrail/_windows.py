"""Long content is scored in overlapping windows, aggregated by max; never silently truncated.

The output stage judges the response; the user prompt beside it is context, so only its tail is
sent (`Windows.prompt_tail`). The prompt itself is judged in full by the input stage.
"""

from __future__ import annotations

from dataclasses import dataclass

from guardrail._exceptions import ConfigError
from guardrail._messages import Turn

__all__ = ["Windows", "prompt_tail", "window_turns"]


@dataclass(frozen=True, kw_only=True)
class Windows:
    """Window size and overlap, in characters (about 4 per token for English).

    Any passage of up to `overlap` characters lies whole inside at least one window, so a
    harmful sentence can't hide across a window boundary.

    `prompt_tail` bounds the prompt side of an output check: each response window is scored
    with the last `prompt_tail` characters of the user prompt, starting after a whitespace when
    one lies in the first quarter of that tail (so no word is cut). A long prompt thus can't
    push output checks over the model's context or slow each streamed check; it is judged in
    full by the input stage. `prompt_tail=0` scores responses with an empty Human Question.
    """

    size: int = 8000
    overlap: int = 1000
    prompt_tail: int = 2000

    def __post_init__(self) -> None:
        for name in ("size", "overlap", "prompt_tail"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"windows.{name} must be a non-negative integer, got {value!r}")
        if not 0 <= self.overlap < self.size // 2:
            raise ConfigError(f"windows.overlap must be below half of windows.size, got {self.overlap} and {self.size}")

    def spans(self, length: int, text: str = "") -> list[tuple[int, int]]:
        """`[start, end)` spans covering `[0, length)`, cut at whitespace where one is near."""
        if length <= self.size:
            return [(0, length)]
        spans: list[tuple[int, int]] = []
        start = 0
        while True:
            end = min(start + self.size, length)
            if end < length and text:
                cut = text.rfind(" ", start + self.size - self.overlap, end)
                end = cut if cut > start + 2 * self.overlap else end
            spans.append((start, end))
            if end >= length:
                return spans
            start = end - self.overlap


def prompt_tail(prompt: str, limit: int) -> str:
    """The last `limit` characters of `prompt`, from a word start when one is near (pure).

    >>> prompt_tail("alpha beta gamma delta", 12)
    'gamma delta'
    """
    if len(prompt) <= limit:
        return prompt
    if limit == 0:
        return ""
    start = len(prompt) - limit
    if not prompt[start - 1].isspace():  # the tail starts inside a word: skip to its end
        for i in range(start, start + limit // 4):
            if prompt[i].isspace():
                return prompt[i + 1 :]
    return prompt[start:]


def window_turns(turn: Turn, windows: Windows | None) -> list[Turn]:
    """The turn itself when it fits, else one turn per window of the judged text.

    Output turns carry only the tail of their prompt (see `Windows.prompt_tail`).
    """
    if windows is None:
        return [turn]
    judged = turn.prompt if turn.response is None else turn.response
    spans = windows.spans(len(judged), judged)
    if turn.response is None:
        return [turn] if len(spans) == 1 else [Turn(prompt=judged[a:b]) for a, b in spans]
    prompt = prompt_tail(turn.prompt, windows.prompt_tail)
    if len(spans) == 1 and len(prompt) == len(turn.prompt):
        return [turn]
    return [Turn(prompt=prompt, response=judged[a:b]) for a, b in spans]
