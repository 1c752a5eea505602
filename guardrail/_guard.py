"""The user-facing `Guard`: policies plus a scorer.

The flow is `messages -> turn -> normalised turn -> windows -> requests -> scores -> verdict ->
observers`. Everything but the scorer call is pure and shared, so `check` and `acheck` differ
only in how they wait for scores (a thread with a deadline, or `asyncio.wait_for`).
"""

from __future__ import annotations

import asyncio
import copy
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import tenacity

from guardrail._batching import BatchingScorer
from guardrail._exceptions import ConfigError, MessageError, ScorerError
from guardrail._messages import Turn, select_turn
from guardrail._normalize import scoring_turn
from guardrail._policies import FailMode, Policy, Stage, as_stage, resolve_policies
from guardrail._scoring import ScoreRequest, Scorer, aload_scorer, ascore, load_scorer, score
from guardrail._verdict import DEFAULT_REFUSAL, Verdict, decide, failed
from guardrail._windows import Windows, window_turns

__all__ = ["Guard"]

Observer = Callable[[Verdict], object]


@dataclass(frozen=True)
class _Plan:
    stage: Stage
    turn: Turn  # the caller's text, for the verdict; the requests score it normalised
    message_index: int
    policies: tuple[Policy, ...]
    requests: list[ScoreRequest]  # window-major: every policy for window 0, then window 1, ...


def validate_seconds(name: str, value: float | None) -> float | None:
    """A timeout or budget: None, or a positive finite number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def validate_retries(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
    return value


class Guard:
    """Checks chat turns against policies.

    >>> from guardrail import Guard, builtin_policy
    >>> from guardrail.testing import FunctionScorer
    >>> guard = Guard(["hate", builtin_policy("dangerous", threshold=0.3)],
    ...               scorer=FunctionScorer(lambda request: 0.1))
    >>> guard.check_input([{"role": "user", "content": "How do I bake bread?"}]).allowed
    True

    With no `scorer`, the embedded default model loads on the first check (not before), behind
    a `BatchingScorer` that gathers concurrent async checks. Built-in policies named by string
    take the scorer's calibrated `thresholds` when it has them (the embedded model does).

    Reliability options: `timeout` bounds each scorer call and `budget` the whole check, retries
    included (`retries` extra attempts on a `ScorerError`); when no score can be had, each
    policy's `on_error` decides (block by default). A scorer that loads lazily (`load()`, like
    the embedded default) loads before the first check's timed attempt, outside `timeout` and
    `budget`; `warm_up=True` (or `guard.warm_up()`) loads it now instead. A sync call that
    timed out keeps running in a daemon thread; `drain()` waits for such calls before exit.

    Content is scored normalised (`normalize_for_scoring`: invisible characters removed, NFKC,
    lone surrogates replaced); verdicts keep the caller's text. Content longer than
    `windows.size` characters is scored in overlapping windows, max over windows; output checks
    see the tail of the prompt (`windows.prompt_tail`). `observers` are called with every
    verdict (an audit log, metrics); an observer that raises fails the check.
    """

    def __init__(
        self,
        policies: Iterable[Policy | str] | None = None,
        *,
        scorer: Scorer | None = None,
        refusal: str = DEFAULT_REFUSAL,
        timeout: float | None = None,
        budget: float | None = None,
        retries: int = 0,
        windows: Windows | None = Windows(),
        observers: Sequence[Observer] = (),
        warm_up: bool = False,
    ) -> None:
        if scorer is None:  # the embedded default, gathering concurrent async checks
            from guardrail._embedded import EmbeddedScorer

            scorer = BatchingScorer(EmbeddedScorer(), max_batch=32, max_wait_ms=0)
        if not callable(getattr(scorer, "score", None)):
            raise ConfigError(f"scorer must have a score(requests) method, got {scorer!r}")
        if not isinstance(refusal, str) or not refusal:
            raise ConfigError("refusal must be a non-empty string")
        if windows is not None and not isinstance(windows, Windows):
            raise ConfigError(f"windows must be a guardrail.Windows or None, got {windows!r}")
        if not all(callable(o) for o in observers):
            raise ConfigError("observers must be callables taking a Verdict")
        thresholds = getattr(scorer, "thresholds", None)
        self.policies = resolve_policies(policies, thresholds=thresholds if isinstance(thresholds, Mapping) else None)
        self.scorer = scorer
        self.refusal = refusal
        self.timeout = validate_seconds("timeout", timeout)
        self.budget = validate_seconds("budget", budget)
        self.retries = validate_retries("retries", retries)
        self.windows = windows
        self.observers = tuple(observers)
        self._stream = False  # a `for_stream()` copy, owning its per-stream scorer
        self._loaded = False
        self._abandoned: set[threading.Thread] = set()
        self._abandoned_lock = threading.Lock()
        if not isinstance(warm_up, bool):
            raise ConfigError(f"warm_up must be a bool, got {warm_up!r}")
        if warm_up:
            self.warm_up()

    def __repr__(self) -> str:
        names = ", ".join(p.name for p in self.policies)
        return f"Guard(policies=[{names}], scorer={type(self.scorer).__name__})"

    def policy(self, name: str) -> Policy:
        for p in self.policies:
            if p.name == name:
                return p
        raise KeyError(name)

    def requests(self, messages: Any, stage: Stage | str) -> list[ScoreRequest]:
        """The scoring requests a check of `stage` would send: per window, one per policy."""
        return self._plan(messages, as_stage(stage)).requests

    def warm_up(self) -> Guard:
        """Load the scorer's model now rather than at the first check; returns the guard.

        >>> guard = Guard(["hate"]).warm_up()     # the embedded model loads here  # doctest: +SKIP

        Raises `ConfigError` when the model can't be found, `ScorerError` when loading fails.
        """
        if not self._loaded:
            load_scorer(self.scorer)
            self._loaded = True
        return self

    async def awarm_up(self) -> Guard:
        """The async twin of `warm_up`: loads in a worker thread unless the scorer has `aload()`."""
        if not self._loaded:
            await aload_scorer(self.scorer)
            self._loaded = True
        return self

    def for_stream(self) -> Guard:
        """This guard for the checks of one streamed answer.

        When the scorer offers `stream_scorer()` (local transformers models), the copy scores
        with a per-stream scorer that keeps the answer's KV cache between checks, so each check
        reads only the new text; otherwise it is this guard. `StreamModerator` uses it and closes
        the stream scorer when the stream ends (`close_stream`).
        """
        make = getattr(self.scorer, "stream_scorer", None)
        stream = None if make is None else make()
        if stream is None:
            return self
        twin = copy.copy(self)
        twin.scorer = stream
        twin._loaded = False  # the stream scorer loads (the model, once) outside the timeout too
        twin._stream = True
        return twin

    def close_stream(self) -> None:
        """Free the per-stream scorer of a `for_stream()` copy; nothing for any other guard."""
        if self._stream:
            self.scorer.close()  # type: ignore[attr-defined]  # the stream scorer for_stream made

    def drain(self, timeout: float | None = None) -> bool:
        """Wait for scorer calls abandoned by a sync `timeout`; True when none is left running.

        A timed-out call can't be interrupted: it finishes in its daemon thread. Call this
        before the interpreter exits (the CLI does), or a native forward still running at exit
        (torch) aborts the process.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._abandoned_lock:
            workers = list(self._abandoned)
        for worker in workers:
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        with self._abandoned_lock:
            self._abandoned = {w for w in self._abandoned if w.is_alive()}
            return not self._abandoned

    def _plan(self, messages: Any, stage: Stage) -> _Plan:
        turn, index = select_turn(messages, stage)
        return self._plan_turn(turn, index, stage)

    def _plan_turn(self, turn: Turn, index: int, stage: Stage) -> _Plan:
        if not isinstance(turn, Turn):
            raise MessageError(f"turn must be a guardrail.Turn, got {type(turn).__name__}")
        if turn.stage is not stage:
            raise MessageError(f"a {stage.value} check needs a turn {'with' if stage is Stage.OUTPUT else 'without'} a response")
        policies = tuple(p for p in self.policies if p.applies_to(stage))
        requests = [
            ScoreRequest(turn=window, guideline=p.guideline(stage), policy=p.name)
            for window in window_turns(scoring_turn(turn), self.windows)
            for p in policies
        ]
        return _Plan(stage, turn, index, policies, requests)

    def _verdict(self, plan: _Plan, scores: Sequence[float] | ScorerError) -> Verdict:
        common: dict[str, Any] = dict(stage=plan.stage, turn=plan.turn, message_index=plan.message_index,
                      policies=plan.policies, refusal=self.refusal)
        if isinstance(scores, ScorerError):
            verdict = failed(error=str(scores), **common)
        else:
            n = len(plan.policies)
            per_policy = [max(scores[i::n]) for i in range(n)] if n else []
            verdict = decide(scores=per_policy, **common)
        for observe in self.observers:  # before a `raise` fail mode, so the audit trail sees it
            observe(verdict)
        if isinstance(scores, ScorerError) and any(p.on_error is FailMode.RAISE for p in plan.policies):
            raise scores
        return verdict

    def _retrying(self, kind: type[tenacity.BaseRetrying]) -> tenacity.BaseRetrying:
        stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(self.retries + 1)
        if self.budget is not None:
            stop |= tenacity.stop_after_delay(self.budget)
        return kind(stop=stop, retry=tenacity.retry_if_exception_type(ScorerError), reraise=True)

    def _attempt_timeout(self, deadline: float | None) -> float | None:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise ScorerError(f"the check's latency budget of {self.budget} s is spent")
        return min((t for t in (self.timeout, left) if t is not None), default=None)

    def _score(self, requests: list[ScoreRequest], deadline: float | None) -> list[float]:
        timeout = self._attempt_timeout(deadline)
        if timeout is None:
            return score(self.scorer, requests)
        outcome: list[Any] = []
        # A daemon thread, so a scorer that hangs forever can't hold the process open.
        worker = threading.Thread(target=lambda: outcome.append(_call(score, self.scorer, requests)), daemon=True,
                                  name="guardrail-scorer")
        worker.start()
        worker.join(timeout)
        if not outcome:
            with self._abandoned_lock:
                self._abandoned = {w for w in self._abandoned if w.is_alive()} | {worker}
            raise ScorerError(f"{type(self.scorer).__name__} timed out after {timeout:.3g} s")
        return _unwrap(outcome[0])

    async def _ascore(self, requests: list[ScoreRequest], deadline: float | None) -> list[float]:
        timeout = self._attempt_timeout(deadline)
        try:
            return await asyncio.wait_for(ascore(self.scorer, requests), timeout)
        except asyncio.TimeoutError:
            raise ScorerError(f"{type(self.scorer).__name__} timed out after {timeout:.3g} s") from None

    def _deadline(self) -> float | None:
        return None if self.budget is None else time.monotonic() + self.budget

    def check(self, messages: Any, stage: Stage | str) -> Verdict:
        return self._run(self._plan(messages, as_stage(stage)))

    async def acheck(self, messages: Any, stage: Stage | str) -> Verdict:
        return await self._arun(self._plan(messages, as_stage(stage)))

    def check_turn(self, turn: Turn, stage: Stage | str | None = None, *, message_index: int = -1) -> Verdict:
        """Check a turn an adapter already holds, without building a message list for it.

        >>> guard.check_turn(Turn(prompt="hi", response="Hello!")).allowed   # doctest: +SKIP
        True

        `stage` defaults to the turn's own (output when it has a response); `message_index`
        is recorded in the verdict as the index of the judged message (-1: the last one).
        """
        stage = _turn_stage(turn, stage)
        return self._run(self._plan_turn(turn, message_index, stage))

    async def acheck_turn(self, turn: Turn, stage: Stage | str | None = None, *, message_index: int = -1) -> Verdict:
        """The async twin of `check_turn`."""
        stage = _turn_stage(turn, stage)
        return await self._arun(self._plan_turn(turn, message_index, stage))

    def _run(self, plan: _Plan) -> Verdict:
        try:
            self.warm_up()  # outside the timeout and the budget
            deadline = self._deadline()
            scores = self._retrying(tenacity.Retrying)(self._score, plan.requests, deadline)
        except ScorerError as exc:
            return self._verdict(plan, exc)
        return self._verdict(plan, scores)

    async def _arun(self, plan: _Plan) -> Verdict:
        try:
            await self.awarm_up()  # outside the timeout and the budget
            deadline = self._deadline()
            scores = await self._retrying(tenacity.AsyncRetrying)(self._ascore, plan.requests, deadline)
        except ScorerError as exc:
            return self._verdict(plan, exc)
        return self._verdict(plan, scores)

    def check_input(self, messages: Any) -> Verdict:
        """Score the latest user message with each input policy's prompt-only guideline."""
        return self.check(messages, Stage.INPUT)

    def check_output(self, messages: Any) -> Verdict:
        """Score the latest assistant message, with its user message, against output policies."""
        return self.check(messages, Stage.OUTPUT)

    async def acheck_input(self, messages: Any) -> Verdict:
        return await self.acheck(messages, Stage.INPUT)

    async def acheck_output(self, messages: Any) -> Verdict:
        return await self.acheck(messages, Stage.OUTPUT)


def _turn_stage(turn: Turn, stage: Stage | str | None) -> Stage:
    if stage is not None:
        return as_stage(stage)
    if not isinstance(turn, Turn):
        raise MessageError(f"turn must be a guardrail.Turn, got {type(turn).__name__}")
    return turn.stage


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except BaseException as exc:  # handed back to the waiting thread
        return _Raised(exc)


@dataclass(frozen=True)
class _Raised:
    exc: BaseException


def _unwrap(result: Any) -> Any:
    if isinstance(result, _Raised):
        raise result.exc
    return result
