"""How an adapter applies a guard: which stages, which input key, how streams are moderated."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from guardrail import ConfigError, StreamMode, check_stream_options

__all__ = ["GuardOptions"]


@dataclass(frozen=True, kw_only=True)
class GuardOptions:
    """Options shared by `GuardedRunnable`, `GuardedChatModel` and `GuardrailMiddleware`.

    >>> GuardOptions(stream_mode="stream_first", every=80).every
    80

    - `input_key`: for dict inputs, the key holding the user's text or messages. Without it a
      dict's `"messages"` value is used, or else all its string values joined (so nothing in
      the prompt goes unchecked).
    - `check_input` / `check_output`: which stages run.
    - `stream_mode`, `every`, `unit`: streaming moderation (see `guardrail.StreamModerator`).
    - `optimistic`: start generation while the input check runs; nothing is released until it
      passes, and generation is cancelled (async) or discarded (sync) on a block.
    """

    input_key: str | None = None
    check_input: bool = True
    check_output: bool = True
    stream_mode: StreamMode = StreamMode.HOLD
    every: int = 200
    unit: str = "chars"
    optimistic: bool = False

    def __post_init__(self) -> None:
        if self.input_key is not None and (not isinstance(self.input_key, str) or not self.input_key):
            raise ConfigError(f"input_key must be a non-empty string or None, got {self.input_key!r}")
        for name in ("check_input", "check_output", "optimistic"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be a bool, got {getattr(self, name)!r}")
        mode = check_stream_options(self.stream_mode, every=self.every, unit=self.unit)
        object.__setattr__(self, "stream_mode", mode)

    def as_kwargs(self) -> dict[str, Any]:
        """The options as constructor keywords, to hand them on to another guarded wrapper."""
        return {**dataclasses.asdict(self), "stream_mode": self.stream_mode.value}
