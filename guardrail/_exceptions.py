"""The one error hierarchy of guardrail.

    GuardrailError
    ├── ConfigError (also ValueError)        invalid policy, threshold, config file or option
    ├── MessageError (also ValueError)       messages that can't be checked (wrong shape or type)
    ├── ScorerError (also RuntimeError)      the model or service failed, or returned a bad score
    └── Blocked                              content was blocked; carries the verdict

Errors are values in the core: `Guard.check_input` returns a `Verdict` even when content is
blocked, and `Verdict.raise_for_block()` turns a block into `Blocked` when the caller asks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guardrail._verdict import Verdict

__all__ = ["Blocked", "ConfigError", "GuardrailError", "MessageError", "ScorerError"]


class GuardrailError(Exception):
    """Root of every error guardrail raises on purpose."""


class ConfigError(GuardrailError, ValueError):
    """A policy, option or configuration file is invalid. The message names the key."""


class MessageError(GuardrailError, ValueError):
    """The messages to check have the wrong shape, type or content."""


class ScorerError(GuardrailError, RuntimeError):
    """The scorer failed or returned something that is not a probability."""


class Blocked(GuardrailError):
    """Content was blocked by at least one policy.

    The full `Verdict` is attached, so callers can log the scores or show the refusal.
    """

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        names = ", ".join(d.policy for d in verdict.blocking)
        why = f" (failed closed: {verdict.errors[0].error})" if verdict.errors else ""
        super().__init__(f"{verdict.stage.value} blocked by policy {names}{why}")
