"""The wrapper's own options, and how a verdict becomes pass, refuse or `Blocked`.

Options live here and in the wrapper's constructor, never in OpenAI's keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from guardrail import ConfigError, StreamMode, Verdict, check_stream_options

__all__ = ["GuardOptions", "OnBlock", "Reasoning"]

OnBlock = Literal["raise", "refuse"]
Reasoning = Literal["moderate", "strip"]


@dataclass(frozen=True, kw_only=True)
class GuardOptions:
    """How a guarded client checks, streams and reacts.

    >>> GuardOptions(stream_mode="stream_first", every=80).every
    80

    - `stream_mode`: `"hold"` releases streamed text only once a check covering it passed;
      `"stream_first"` releases at once and stops the stream on a violation.
    - `every` / `unit`: check the growing response every `every` characters (`"chars"`) or
      text deltas (`"chunks"`), and once more at the end.
    - `optimistic`: start the OpenAI call while the input check runs; nothing is released
      before the input check passed, and the call is cancelled (async) or closed and
      discarded (sync) when the input is blocked.
    - `on_block`: `"raise"` raises `guardrail.Blocked` for `block` policies; `"refuse"` answers
      with the refusal (finish reason `content_filter`) as `rewrite` policies always do.
    - `on_verdict`: called with every input verdict and every final output verdict (flags too).
    - `reasoning`: what happens to the reasoning text some servers add to chat completions
      (`reasoning_content` or `reasoning` on a message or a stream delta, as vLLM and DeepSeek
      send it): `"moderate"` (default) checks it as part of the answer, and holds it like
      content in `hold` mode; `"strip"` removes it from what the caller gets, so it needs no
      check. A refusal never carries it.
    """

    stream_mode: StreamMode | str = StreamMode.HOLD
    every: int = 200
    unit: str = "chars"
    optimistic: bool = False
    on_block: OnBlock = "raise"
    on_verdict: Callable[[Verdict], object] | None = None
    reasoning: Reasoning = "moderate"

    def __post_init__(self) -> None:
        mode = check_stream_options(self.stream_mode, every=self.every, unit=self.unit)
        object.__setattr__(self, "stream_mode", mode)
        if not isinstance(self.optimistic, bool):
            raise ConfigError(f"optimistic must be a bool, got {self.optimistic!r}")
        if self.on_block not in ("raise", "refuse"):
            raise ConfigError(f"on_block must be 'raise' or 'refuse', got {self.on_block!r}")
        if self.on_verdict is not None and not callable(self.on_verdict):
            raise ConfigError("on_verdict must be callable or None")
        if self.reasoning not in ("moderate", "strip"):
            raise ConfigError(f"reasoning must be 'moderate' or 'strip', got {self.reasoning!r}")

    def refuses(self, verdict: Verdict | None) -> bool:
        """True when the content must be replaced by the refusal; raises `Blocked` if asked to.

        `None` (nothing to check) passes. Flags pass and are reported to `on_verdict`.
        """
        if verdict is None:
            return False
        if self.on_verdict is not None:
            self.on_verdict(verdict)
        if verdict.blocked and self.on_block == "raise":
            verdict.raise_for_block()
        return not verdict.allowed
