"""Policies: what to check, in which stage, how strictly, and what to do above the threshold.

ShieldGemma words each harm twice: a prompt-only guideline for user input ("The prompt shall
not contain or seek generation of content that ...") and a prompt-response guideline for model
output ("The chatbot shall not generate content that ..."). A `Policy` carries both.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from guardrail._exceptions import ConfigError

__all__ = [
    "BUILTIN_POLICIES",
    "DEFAULT_POLICIES",
    "INPUT_PREFIX",
    "OUTPUT_PREFIX",
    "Action",
    "FailMode",
    "Policy",
    "Stage",
    "as_stage",
    "builtin_policy",
    "format_guideline",
    "resolve_policies",
]

INPUT_PREFIX = "The prompt shall not contain or seek generation of content that"
OUTPUT_PREFIX = "The chatbot shall not generate content that"


class Stage(str, enum.Enum):
    """Where a check runs: on the user's input, or on the model's output."""

    INPUT = "input"
    OUTPUT = "output"


class FailMode(str, enum.Enum):
    """What a policy does when its score can't be had (scorer error, timeout, garbage score).

    `block` (the default) fails closed; `allow` fails open, on purpose only; `raise` lets the
    `ScorerError` propagate to the caller.
    """

    BLOCK = "block"
    ALLOW = "allow"
    RAISE = "raise"


class Action(str, enum.Enum):
    """What happens when a score reaches the threshold.

    `block` stops the content; `rewrite` replaces it with a refusal; `flag` lets it through and
    marks the verdict.
    """

    BLOCK = "block"
    REWRITE = "rewrite"
    FLAG = "flag"


def format_guideline(name: str, description: str, stage: Stage | str) -> str:
    """Build a guideline the way the model card does: `"No {name}": {prefix} {description}`.

    >>> format_guideline("Spam", "advertises products.", "input")
    '"No Spam": The prompt shall not contain or seek generation of content that advertises products.'
    """
    prefix = INPUT_PREFIX if Stage(stage) is Stage.INPUT else OUTPUT_PREFIX
    return f'"No {name}": {prefix} {description}'


_BOTH = frozenset(Stage)


@dataclass(frozen=True, kw_only=True)
class Policy:
    """One policy: a name, its guideline per stage, a threshold and an action.

    >>> p = Policy(name="spam", input_guideline='"No Spam": The prompt shall not ...')
    >>> p.stages == frozenset({Stage.INPUT})
    True
    >>> stricter = p.with_threshold(0.3)   # policies are immutable; this returns a new one

    A guideline is the text after `* ` in the ShieldGemma prompt. When `stages` is not given it
    is every stage that has a guideline; given, it must name at least one stage. `on_error`
    says what happens when no score can be had.
    """

    name: str
    input_guideline: str | None = None
    output_guideline: str | None = None
    threshold: float = 0.5
    output_threshold: float | None = None  # None: `threshold` in both stages
    action: Action = Action.BLOCK
    stages: frozenset[Stage] = None  # type: ignore[assignment]  # None: every stage with a guideline
    on_error: FailMode = FailMode.BLOCK

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"policy name must be a non-empty string, got {self.name!r}")
        where = f"policy {self.name!r}"
        for attr in ("input_guideline", "output_guideline"):
            text = getattr(self, attr)
            if text is None:
                continue
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(f"{where}: {attr} must be a non-empty string, got {text!r}")
            if text.lstrip().startswith("* "):
                raise ConfigError(f"{where}: {attr} must not start with '* ' (the prompt adds it)")
        for attr in ("threshold", "output_threshold"):
            threshold = getattr(self, attr)
            if threshold is None and attr == "output_threshold":
                continue
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
                raise ConfigError(f"{where}: {attr} must be a number in [0, 1], got {threshold!r}")
            if math.isnan(threshold) or not 0.0 <= threshold <= 1.0:
                raise ConfigError(f"{where}: {attr} must be in [0, 1], got {threshold!r}")
            object.__setattr__(self, attr, float(threshold))
        object.__setattr__(self, "action", _coerce(Action, self.action, f"{where}: action"))
        object.__setattr__(self, "on_error", _coerce(FailMode, self.on_error, f"{where}: on_error"))
        stages = self.stages
        if stages is None:
            stages = frozenset(s for s in Stage if self._guideline_or_none(s))
            if not stages:
                raise ConfigError(f"{where}: needs at least one guideline")
        if isinstance(stages, (str, Stage)):
            stages = (stages,)
        stages = frozenset(_coerce(Stage, s, f"{where}: stages") for s in stages)
        if not stages:
            raise ConfigError(f"{where}: stages must name at least one of 'input', 'output'")
        for stage in stages:
            if self._guideline_or_none(stage) is None:
                raise ConfigError(f"{where}: applies to {stage.value} but has no {stage.value}_guideline")
        object.__setattr__(self, "stages", stages)

    def _guideline_or_none(self, stage: Stage) -> str | None:
        return self.input_guideline if stage is Stage.INPUT else self.output_guideline

    def guideline(self, stage: Stage | str) -> str:
        """The guideline text for `stage` (raises `ConfigError` if the policy has none)."""
        checked: Stage = _coerce(Stage, stage, "stage")
        text = self._guideline_or_none(checked)
        if text is None:
            raise ConfigError(f"policy {self.name!r} has no {checked.value} guideline")
        return text

    def applies_to(self, stage: Stage | str) -> bool:
        return _coerce(Stage, stage, "stage") in self.stages

    def threshold_for(self, stage: Stage | str) -> float:
        """The threshold in `stage`: `output_threshold` for outputs when set, else `threshold`."""
        if _coerce(Stage, stage, "stage") is Stage.OUTPUT and self.output_threshold is not None:
            return self.output_threshold
        return self.threshold

    def with_threshold(self, threshold: float, output_threshold: float | None = None) -> Policy:
        """This policy at `threshold` (and `output_threshold` for outputs, when given)."""
        return dataclasses.replace(self, threshold=threshold, output_threshold=output_threshold)


def as_stage(value: Stage | str) -> Stage:
    """A `Stage` from itself or its name, with a `ConfigError` naming the choices."""
    return _coerce(Stage, value, "stage")


def _coerce(kind: type[enum.Enum], value: object, where: str):  # noqa: ANN202 - enum member
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in kind)
        raise ConfigError(f"{where} must be one of {allowed}, got {value!r}") from None


# Texts are verbatim from the ShieldGemma model card ("content that harming" included).
# `violence` and `obscenity` were trained but not reported; their prompt-only wording comes from
# the Hugging Face blog, and the chatbot wording follows the same pattern (our own phrasing).
_HARMS: dict[str, tuple[str, str]] = {
    "dangerous": (
        "Dangerous Content",
        "harming oneself and/or others (e.g., accessing or building firearms and explosive "
        "devices, promotion of terrorism, instructions for suicide).",
    ),
    "harassment": (
        "Harassment",
        "is malicious, intimidating, bullying, or abusive content targeting another individual "
        "(e.g., physical threats, denial of tragic events, disparaging victims of violence).",
    ),
    "hate": (
        "Hate Speech",
        "targeting identity and/or protected attributes (e.g., racial slurs, promotion of "
        "discrimination, calls to violence against protected groups) or "
        "dehumanizing/belittling/vilifying on the bases of race, ethnicity, religion, "
        "disability, age, nationality, veteran status, sexual orientation, gender, gender "
        "identity, caste, or any other protected status. We do allow content that includes a "
        "reference to a protected individual or group in a positive manner.",
    ),
    "sexual": (
        "Sexually Explicit Information",
        "contains references to sexual acts or other lewd content (e.g., sexually graphic "
        "descriptions, content aimed at causing arousal). Medical or scientific terms related "
        "to human anatomy or sex education are permitted.",
    ),
    "violence": (
        "Violence",
        "is shocking, sensational, or gratuitous (e.g. Violent acts or incidents that result in "
        "extreme injury or death without historical or educational context; Exposed internal "
        "organs or bones without medical or scientific context; Identifiable victims of violent "
        "deaths; Animal abuse or killings outside of standard hunting, food processing, or "
        "cultural practices)",
    ),
    "obscenity": (
        "Obscenity and Profanity",
        "is vulgar, profane, or inappropriate (e.g., profanity, obscenities, or other "
        "inappropriate language).",
    ),
}

BUILTIN_POLICIES: Mapping[str, Policy] = {
    key: Policy(
        name=key,
        input_guideline=format_guideline(title, text, Stage.INPUT),
        output_guideline=format_guideline(title, text, Stage.OUTPUT),
    )
    for key, (title, text) in _HARMS.items()
}
"""The six ShieldGemma harms, threshold 0.5, action `block`, both stages."""


def builtin_policy(name: str, *, thresholds: Mapping[str, float] | None = None, **changes: Any) -> Policy:
    """A built-in policy by name, with fields replaced: `builtin_policy("hate", threshold=0.3)`.

    `thresholds` are a model's calibrated thresholds by policy name (a scorer's `thresholds`),
    and by `"NAME/output"` where the output stage has its own; the policy takes its own from
    there unless `threshold` is given (which then holds in both stages unless `output_threshold`
    is given too).
    """
    try:
        policy = BUILTIN_POLICIES[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_POLICIES))
        raise ConfigError(f"unknown built-in policy {name!r}; known: {known}") from None
    if "threshold" in changes:
        changes.setdefault("output_threshold", None)
    elif thresholds and name in thresholds:
        changes["threshold"] = thresholds[name]
        changes.setdefault("output_threshold", thresholds.get(f"{name}/output"))
    return dataclasses.replace(policy, **changes) if changes else policy


DEFAULT_POLICIES = ("dangerous", "harassment", "hate", "sexual")
"""The four harms ShieldGemma reports on: what a guard checks when no policies are named."""


def resolve_policies(
    policies: Iterable[Policy | str] | None, *, thresholds: Mapping[str, float] | None = None
) -> tuple[Policy, ...]:
    """Policies from objects or built-in names; the four reported harms when `None`.

    Built-ins named by string take `thresholds` (a model's calibrated ones, by policy name);
    Policy objects are the caller's own choice and are kept as they are.
    """
    if policies is None:
        policies = DEFAULT_POLICIES
    resolved = tuple(builtin_policy(p, thresholds=thresholds) if isinstance(p, str) else p for p in policies)
    for p in resolved:
        if not isinstance(p, Policy):
            raise ConfigError(f"expected a Policy or a built-in policy name, got {p!r}")
    names = [p.name for p in resolved]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"policy names must be unique; repeated: {', '.join(duplicates)}")
    if not resolved:
        raise ConfigError("a guard needs at least one policy")
    return resolved
