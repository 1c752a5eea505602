"""Moderate a streamed response as it grows: one sans-IO core for every adapter.

Text arrives as deltas. Once `every` characters (or stream chunks) have arrived since the last
check, the moderator checks the response so far, cut after its last text boundary (whitespace or
punctuation) so no word is split; text with no boundary at all (a URL, base64, a language
written without spaces) is checked anyway, uncut, once `2 * every` units have piled up. One more
check runs at the end. The work per delta is proportional to the delta, whatever the text.
Modes:

- `hold` (default): text is released only once a passing check covers it; nothing unchecked
  ever reaches the caller.
- `stream_first`: text is released ahead of the checks, but never more than `every` units
  (characters, or chunks) past the end of the last passing check; text beyond that waits for
  the next check. On a violation the stream stops and the adapter emits a refusal, so at most
  `every` units of the violating text have gone out.

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
from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from guardrail._exceptions import ConfigError
from guardrail._guard import Guard
from guardrail._messages import Turn, prompt_text
from guardrail._policies import Stage
from guardrail._verdict import Verdict

__all__ = ["StreamMode", "StreamModerator", "StreamStep", "validate_stream_options"]


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


def validate_stream_options(mode: StreamMode | str, *, every: int, unit: str) -> StreamMode:
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


def _is_boundary(char: str) -> bool:
    return char.isspace() or (not char.isalnum() and char not in "'_-")


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
        self.mode = validate_stream_options(mode, every=every, unit=unit)
        self.guard = guard
        self._checker = guard.for_stream()  # incremental scoring where the scorer offers it
        self.messages = list(messages)
        self.prompt = prompt_text(self.messages) if self.messages else ""
        self.every = every
        self.unit = unit
        self.text = ""
        self.released = 0
        self.checked = 0  # the response up to here passed a check
        self.stopped = False
        self.verdict: Verdict | None = None
        self.checks = 0
        self._boundary = 0  # the end of the last whole word in `text`
        self._chunk_ends: deque[int] = deque()  # ends of the chunks not wholly checked yet

    @property
    def refusal(self) -> str:
        return self.guard.refusal

    @staticmethod
    def _last_boundary(text: str, start: int, end: int) -> int:
        """The end of the last whole word in `text[start:end]`, or 0 when there is none.

        Called once per delta on the delta's own span, so the scan is linear in the stream.
        """
        for i in range(end - 1, start - 1, -1):
            if _is_boundary(text[i]):
                return i + 1
        return 0

    def _unchecked(self) -> int:
        """Units (characters or chunks) not yet covered by a passing check."""
        return len(self._chunk_ends) if self.unit == "chunks" else len(self.text) - self.checked

    def _due(self) -> int | None:
        unchecked = self._unchecked()
        if unchecked < self.every:
            return None
        if self._boundary > self.checked:
            return self._boundary
        return len(self.text) if unchecked >= 2 * self.every else None  # no boundary is coming

    def _check(self, upto: int) -> Generator[str, Verdict, None]:
        verdict = yield self.text[:upto]
        self.checks += 1
        self.verdict = verdict
        if verdict.allowed:
            self.checked = upto
            while self._chunk_ends and self._chunk_ends[0] <= upto:
                self._chunk_ends.popleft()
        else:
            self.stopped = True
            self._checker.close_stream()  # no more checks: free the stream's scoring cache

    def _limit(self) -> int:
        """How far text may be released: checked text, plus `every` units in stream_first."""
        if self.mode is StreamMode.HOLD:
            return self.checked
        if self.unit == "chunks":
            ahead = self._chunk_ends
            return ahead[self.every - 1] if len(ahead) >= self.every else len(self.text)
        return min(len(self.text), self.checked + self.every)

    def _release(self) -> StreamStep:
        end = self._limit()
        if self.stopped:
            end = self.released  # nothing more goes out once a violation is seen
        text, self.released = self.text[self.released : end], max(self.released, end)
        return StreamStep(text=text, stopped=self.stopped, verdict=self.verdict)

    def feeding(self, delta: str) -> _Checks:
        """`feed` as a generator: yields each text to check, takes its verdict, returns the step.

        For adapters that drive the checks themselves (`guardrail.GuardedCall` does).
        """
        if not isinstance(delta, str):
            raise TypeError(f"stream deltas must be str, got {type(delta).__name__}")
        if self.stopped:
            return StreamStep(text="", stopped=True, verdict=self.verdict)
        start = len(self.text)
        self.text += delta
        self._boundary = self._last_boundary(self.text, start, len(self.text)) or self._boundary
        if delta:
            self._chunk_ends.append(len(self.text))
        upto = self._due()
        if upto is not None:
            yield from self._check(upto)
        return self._release()

    def finishing(self) -> _Checks:
        """`finish` as a generator, like `feeding`."""
        if not self.stopped and (self.checked < len(self.text) or self.checks == 0):
            yield from self._check(len(self.text))
        self._checker.close_stream()
        return self._release()

    def _drive(self, steps: _Checks) -> StreamStep:
        try:
            text = next(steps)
            while True:
                text = steps.send(self._checker.check_turn(self.turn(text), Stage.OUTPUT, message_index=len(self.messages)))
        except StopIteration as done:
            return done.value

    async def _adrive(self, steps: _Checks) -> StreamStep:
        try:
            text = next(steps)
            while True:
                text = steps.send(await self._checker.acheck_turn(self.turn(text), Stage.OUTPUT, message_index=len(self.messages)))
        except StopIteration as done:
            return done.value

    def turn(self, text: str) -> Turn:
        """The turn a check of the response so far scores: the prompt and `text`."""
        return Turn(prompt=self.prompt, response=text)

    def feed(self, delta: str) -> StreamStep:
        """Add a delta; run a check when one is due; say what may be released."""
        return self._drive(self.feeding(delta))

    async def afeed(self, delta: str) -> StreamStep:
        return await self._adrive(self.feeding(delta))

    def finish(self) -> StreamStep:
        """The final check over the whole response; releases the rest when it passes."""
        return self._drive(self.finishing())

    async def afinish(self) -> StreamStep:
        return await self._adrive(self.finishing())
