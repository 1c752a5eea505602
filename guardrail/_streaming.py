"""Moderate a streamed response as it grows: one sans-IO core for every adapter.

Text arrives as deltas. Every `every` characters (or stream chunks) the moderator checks the
response so far, cut at a text boundary (whitespace or punctuation) so no word is split, and
once more at the end. Modes:

- `hold` (default): text is released only once a passing check covers it; nothing unchecked
  ever reaches the caller.
- `stream_first`: text is released at once; on a violation the stream stops (within one check
  window) and the adapter emits a refusal.

The checking logic is a generator that yields the text it wants checked and receives the
verdict, so `feed` and `afeed` share it and differ only in how they call the guard.

>>> moderator = StreamModerator(guard, messages)               # doctest: +SKIP
>>> for delta in upstream:                                     # doctest: +SKIP
...     step = moderator.feed(delta)
...     emit(step.text)
...     if step.stopped: emit(moderator.refusal); break
... else:
...     step = moderator.finish(); emit(step.text)             # and check step.stopped
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from guardrail._exceptions import ConfigError
from guardrail._guard import Guard
from guardrail._verdict import Verdict

__all__ = ["StreamMode", "StreamModerator", "StreamStep", "check_stream_options"]


class StreamMode(str, enum.Enum):
    HOLD = "hold"
    STREAM_FIRST = "stream_first"


@dataclass(frozen=True, kw_only=True)
class StreamStep:
    """What the caller may do after one delta: release `text`; stop if `stopped`."""

    text: str
    stopped: bool = False
    verdict: Verdict | None = None


_Checks = Generator[str, Verdict, StreamStep]


def check_stream_options(mode: StreamMode | str, *, every: int, unit: str) -> StreamMode:
    """Validate streaming options (for the moderator and every adapter); returns the mode."""
    try:
        checked = StreamMode(mode)
    except ValueError:
        raise ConfigError(f"stream_mode must be 'hold' or 'stream_first', got {mode!r}") from None
    if unit not in ("chars", "chunks"):
        raise ConfigError(f"unit must be 'chars' or 'chunks', got {unit!r}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"every must be a positive integer, got {every!r}")
    return checked


def _boundary(text: str, start: int) -> int:
    """The end of the last whole word in `text[start:]`, or `start` when there is none yet."""
    for i in range(len(text) - 1, start - 1, -1):
        if text[i].isspace() or (not text[i].isalnum() and text[i] not in "'_-"):
            return i + 1
    return start


class StreamModerator:
    """Checks a growing assistant response against a guard's output policies.

    `messages` is the conversation the response answers (its latest user turn is the prompt).
    `unit` is `"chars"` or `"chunks"` (stream deltas, roughly tokens for chat APIs).
    """

    def __init__(
        self,
        guard: Guard,
        messages: Sequence[Any],
        *,
        mode: StreamMode | str = StreamMode.HOLD,
        every: int = 200,
        unit: str = "chars",
    ) -> None:
        self.mode = check_stream_options(mode, every=every, unit=unit)
        self.guard = guard
        self.messages = list(messages)
        self.every = every
        self.unit = unit
        self.text = ""
        self.released = 0
        self.checked = 0  # the response up to here passed a check
        self.stopped = False
        self.verdict: Verdict | None = None
        self.checks = 0
        self._pending_chunks = 0

    @property
    def refusal(self) -> str:
        return self.guard.refusal

    def _due(self) -> int | None:
        if self.unit == "chunks":
            if self._pending_chunks < self.every:
                return None
        elif len(self.text) - self.checked < self.every:
            return None
        cut = _boundary(self.text, self.checked)
        return cut if cut > self.checked else None

    def _check(self, upto: int) -> _Checks:
        verdict = yield self.text[:upto]
        self.checks += 1
        self.verdict = verdict
        if verdict.allowed:
            self.checked = upto
            self._pending_chunks = 0
        else:
            self.stopped = True

    def _release(self) -> StreamStep:
        end = len(self.text) if self.mode is StreamMode.STREAM_FIRST else self.checked
        if self.stopped:
            end = self.released  # nothing more goes out once a violation is seen
        text, self.released = self.text[self.released : end], max(self.released, end)
        return StreamStep(text=text, stopped=self.stopped, verdict=self.verdict)

    def _feed(self, delta: str) -> _Checks:
        if not isinstance(delta, str):
            raise TypeError(f"stream deltas must be str, got {type(delta).__name__}")
        if self.stopped:
            return StreamStep(text="", stopped=True, verdict=self.verdict)
        self.text += delta
        self._pending_chunks += 1
        upto = self._due()
        if upto is not None:
            yield from self._check(upto)
        return self._release()

    def _finish(self) -> _Checks:
        if not self.stopped and (self.checked < len(self.text) or self.checks == 0):
            yield from self._check(len(self.text))
        return self._release()

    def _drive(self, steps: _Checks) -> StreamStep:
        try:
            text = next(steps)
            while True:
                text = steps.send(self.guard.check_output(self._as_messages(text)))
        except StopIteration as done:
            return done.value

    async def _adrive(self, steps: _Checks) -> StreamStep:
        try:
            text = next(steps)
            while True:
                text = steps.send(await self.guard.acheck_output(self._as_messages(text)))
        except StopIteration as done:
            return done.value

    def _as_messages(self, text: str) -> list[Any]:
        return [*self.messages, {"role": "assistant", "content": text}]

    def feed(self, delta: str) -> StreamStep:
        """Add a delta; run a check when one is due; say what may be released."""
        return self._drive(self._feed(delta))

    async def afeed(self, delta: str) -> StreamStep:
        return await self._adrive(self._feed(delta))

    def finish(self) -> StreamStep:
        """The final check over the whole response; releases the rest when it passes."""
        return self._drive(self._finish())

    async def afinish(self) -> StreamStep:
        return await self._adrive(self._finish())
