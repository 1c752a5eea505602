"""Long content is scored in overlapping windows, aggregated by max; never silently truncated."""

from __future__ import annotations

from dataclasses import dataclass

from guardrail._exceptions import ConfigError
from guardrail._messages import Turn

__all__ = ["Windows", "window_turns"]


@dataclass(frozen=True, kw_only=True)
class Windows:
    """Window size and overlap, in characters (about 4 per token for English).

    Any passage of up to `overlap` characters lies whole inside at least one window, so a
    harmful sentence can't hide across a window boundary.
    """

    size: int = 8000
    overlap: int = 1000

    def __post_init__(self) -> None:
        for name in ("size", "overlap"):
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


def window_turns(turn: Turn, windows: Windows | None) -> list[Turn]:
    """The turn itself when it fits, else one turn per window of the judged text."""
    if windows is None:
        return [turn]
    judged = turn.prompt if turn.response is None else turn.response
    spans = windows.spans(len(judged), judged)
    if len(spans) == 1:
        return [turn]
    if turn.response is None:
        return [Turn(prompt=judged[a:b]) for a, b in spans]
    return [Turn(prompt=turn.prompt, response=judged[a:b]) for a, b in spans]
