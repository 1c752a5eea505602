"""The adapter kernel: one guarded-call machine that every integration drives.

An adapter (LangChain, OpenAI, an HTTP proxy) only converts: it describes one request as a
`Call` (the conversation to check, how to start it, how to read and refuse its result, and a
`ChunkReader` for its stream, all in its own types) and hands it to `invoke`, `ainvoke`,
`open_stream` or `aopen_stream`. Everything about *when* to check and *what a verdict means*
is here, written once:

1. check the input (the latest user turn), unless the options turn it off;
2. start the call (in `optimistic` mode, before the input check, in the background; a refused
   input drops it: a task is cancelled, a thread's result closed when it arrives);
3. check each output, or moderate the stream through one `StreamModerator` and one relay;
4. turn each verdict into pass, refuse or raise (`react`).

The machine is a generator of steps (`Check`, `Start`, `Join`, `Next`, `Emit`), like
`StreamModerator`'s `verdict = yield text`, httpx's auth flows and tenacity's `DoAttempt`. The
sync and async drivers (`_drivers`) only carry the steps out; they differ in `await`.

>>> result = guardrail.invoke(guard, options, call)   # an adapter's create(...)  # doctest: +SKIP
"""

from __future__ import annotations

import types
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from guardrail._exceptions import Blocked, ConfigError
from guardrail._guard import Guard
from guardrail._messages import Turn, prompt_text
from guardrail._policies import Stage
from guardrail._relay import ChunkReader, Relay
from guardrail._streaming import StreamMode, StreamModerator, StreamStep, validate_stream_options
from guardrail._verdict import Verdict

__all__ = ["Call", "GuardOptions", "OnBlock", "Reasoning", "react"]

OnBlock = Literal["raise", "refuse"]
Reasoning = Literal["moderate", "strip"]


@dataclass(frozen=True, kw_only=True)
class GuardOptions:
    """How an adapter applies a guard; the same options for every integration.

    >>> GuardOptions(stream_mode="stream_first", every=80).every
    80

    - `check_input` / `check_output`: which stages run.
    - `input_key`: for dict inputs (LangChain), the key holding the user's text or messages.
    - `stream_mode`: `"hold"` releases streamed text only once a check covering it passed;
      `"stream_first"` releases at once, at most `every` units ahead of the last passing check.
    - `every` / `unit`: check the growing response every `every` characters (`"chars"`) or
      deltas (`"chunks"`), and once more at the end.
    - `optimistic`: start the call while the input check runs; nothing is released before the
      input check passed, and a refused input drops the call.
    - `on_block`: `"raise"` raises `guardrail.Blocked` for `block` policies; `"refuse"` answers
      with the refusal, as `rewrite` policies always do. Where the result can't carry a
      refusal (a structured value), a refusal raises `Blocked` too.
    - `on_verdict`: called with every input verdict and every final output verdict (flags too).
    - `reasoning`: what happens to reasoning text a server adds (`"moderate"`: checked as part of
      the answer; `"strip"`: removed from what the caller gets, where the adapter can).
    """

    check_input: bool = True
    check_output: bool = True
    input_key: str | None = None
    stream_mode: StreamMode | str = StreamMode.HOLD
    every: int = 200
    unit: str = "chars"
    optimistic: bool = False
    on_block: OnBlock = "raise"
    on_verdict: Callable[[Verdict], object] | None = None
    reasoning: Reasoning = "moderate"

    def __post_init__(self) -> None:
        object.__setattr__(self, "stream_mode", validate_stream_options(self.stream_mode, every=self.every, unit=self.unit))
        for name in ("check_input", "check_output", "optimistic"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.input_key is not None and (not isinstance(self.input_key, str) or not self.input_key):
            raise ConfigError(f"input_key must be a non-empty string or None, got {self.input_key!r}")
        if self.on_block not in ("raise", "refuse"):
            raise ConfigError(f"on_block must be 'raise' or 'refuse', got {self.on_block!r}")
        if self.on_verdict is not None and not callable(self.on_verdict):
            raise ConfigError("on_verdict must be callable or None")
        if self.reasoning not in ("moderate", "strip"):
            raise ConfigError(f"reasoning must be 'moderate' or 'strip', got {self.reasoning!r}")

    def moderator(self, guard: Guard, conversation: Sequence[Any]) -> StreamModerator:
        return StreamModerator(guard, conversation, mode=self.stream_mode, every=self.every, unit=self.unit)


def react(verdict: Verdict, options: GuardOptions) -> bool:
    """The one rule from a verdict to an action: False to pass, True to refuse; raises `Blocked`.

    Every verdict goes to `on_verdict` first. A `block` verdict raises unless `on_block` is
    `"refuse"`; a `rewrite` verdict refuses; `allow` and `flag` pass.
    """
    if options.on_verdict is not None:
        options.on_verdict(verdict)
    if verdict.blocked and options.on_block == "raise":
        raise Blocked(verdict)
    return not verdict.allowed


def refused(value: Any, verdict: Verdict) -> Any:
    """`value`, a refusal an adapter built; `Blocked` when it could build none (`None`)."""
    if value is None:
        raise Blocked(verdict)
    return value


class Call(Protocol):
    """One guarded request, in an adapter's own types: the only thing an adapter writes.

    `conversation` holds OpenAI-shaped messages (dicts or objects with `role` and `content`).
    `start()` sends the request and returns its result, an awaitable of it, or a stream (an
    iterable, or an async iterable, of chunks). The rest reads and refuses results; subclass
    this protocol to inherit `visible` (the result as it came).
    """

    conversation: Sequence[Any]

    def start(self) -> Any: ...

    def outputs(self, result: Any) -> list[str]:
        """The text of each output (choice) of a result, to check."""
        ...

    def refuse(self, result: Any, indexes: set[int], refusal: str) -> Any:
        """`result` with the outputs at `indexes` replaced by `refusal`; `None` if it can't be."""
        ...

    def refusal(self, refusal: str) -> Any:
        """The result to return when the input is refused; `None` if it can't be expressed."""
        ...

    def reader(self) -> ChunkReader:
        """A fresh reader for this call's stream."""
        ...

    def visible(self, result: Any) -> Any:
        """The result as the caller may see it (e.g. without stripped reasoning)."""
        return result


# --- the steps the machine yields, and what the drivers answer -------------------------------


@dataclass(frozen=True)
class Check:
    """Check `messages` (the input) or `turn` (an output); answered with the `Verdict`."""

    stage: Stage
    messages: Sequence[Any] = ()
    turn: Turn | None = None
    index: int = -1


@dataclass(frozen=True)
class Start:
    """Start the call; answered with its result (`background`: with None, see `Join`)."""

    background: bool = False


class Join:
    """Answered with the result of the call started in the background."""


class Next:
    """Answered with the stream's next chunk, or `END`."""


@dataclass(frozen=True)
class Emit:
    """Hand `items` to the caller (streams only); answered with None."""

    items: list[Any]


END = object()
Step = Check | Start | Join | Next
_Machine = Generator[Step, Any, Any]


@dataclass(frozen=True)
class _Refused:
    verdict: Verdict


class _Flow:
    """The machine for one call: `begin` (input check, start), then `finish` or `moderate`."""

    def __init__(self, guard: Guard, options: GuardOptions, call: Call) -> None:
        self.guard, self.options, self.call = guard, options, call
        self.conversation = list(call.conversation)
        # Read before anything is sent: content that can't be checked is refused up front.
        self.prompt = prompt_text(self.conversation) if self.conversation else ""
        self.check_input = options.check_input and any(_role(m) == "user" for m in self.conversation)

    def begin(self) -> _Machine:
        """Check the input and start the call: returns the result, or `_Refused`."""
        early = self.options.optimistic and self.check_input
        if early:
            yield Start(background=True)
        if self.check_input:
            verdict = yield Check(Stage.INPUT, messages=self.conversation)
            if react(verdict, self.options):
                return _Refused(verdict)
        return (yield Join()) if early else (yield Start())

    def finish(self, result: Any) -> _Machine:
        """Check each output of a whole result: returns it, or its refusal."""
        result = self.call.visible(result)
        if not self.options.check_output:
            return result
        verdicts = []
        for text in self.call.outputs(result):
            turn = Turn(prompt=self.prompt, response=text)
            verdicts.append((yield Check(Stage.OUTPUT, turn=turn, index=len(self.conversation))))
        indexes = {n for n, verdict in enumerate(verdicts) if react(verdict, self.options)}
        if not indexes:
            return result
        first = verdicts[min(indexes)]
        return refused(self.call.refuse(result, indexes, self.guard.refusal), first)

    def moderate(self) -> Generator[Step | Emit, Any, None]:
        """Relay a stream through the moderator: yields `Emit` for what may go out."""
        reader = self.call.reader()
        if not self.options.check_output:
            while (item := (yield Next())) is not END:
                yield Emit([reader.visible(item)])
            return
        moderator = self.options.moderator(self.guard, self.conversation)
        relay = Relay(reader, moderator)
        while (item := (yield Next())) is not END:
            text = relay.accept(item)
            step = (yield from self._checks(moderator.feeding(text))) if text else None
            if out := self._after(relay, step):
                yield Emit(out)
            if relay.done:
                return
        extra = reader.extra_text()
        if extra:  # text the deltas did not carry (tool calls, structured chunks): one last check
            turn = moderator.turn("\n".join(t for t in (moderator.text, extra) if t))
            verdict = yield Check(Stage.OUTPUT, turn=turn, index=len(self.conversation))
            step = StreamStep(text="", stopped=not verdict.allowed, verdict=verdict)
        else:
            step = yield from self._checks(moderator.finishing())
        yield Emit(self._finished(relay, step))

    def _checks(self, checks: Generator[str, Verdict, StreamStep]) -> Generator[Step, Any, StreamStep]:
        """The moderator's checks, as steps of this machine."""
        try:
            text = next(checks)
            while True:
                turn = Turn(prompt=self.prompt, response=text)
                text = checks.send((yield Check(Stage.OUTPUT, turn=turn, index=len(self.conversation))))
        except StopIteration as done:
            return done.value

    def _after(self, relay: Relay, step: StreamStep | None) -> list[Any]:
        if step is not None and step.stopped:
            return self._stop(relay, step)
        return relay.released()

    def _finished(self, relay: Relay, step: StreamStep) -> list[Any]:
        if step.stopped:
            return self._stop(relay, step)
        if step.verdict is not None:
            react(step.verdict, self.options)  # reports flags; an allowed verdict never refuses
        return relay.rest()

    def _stop(self, relay: Relay, step: StreamStep) -> list[Any]:
        verdict = step.verdict
        assert verdict is not None  # the moderator stops only on a verdict
        relay.stop()
        react(verdict, self.options)  # raises Blocked when asked to
        return refused(relay.reader.refusal(self.guard.refusal, after_text=relay.moderator.released > 0), verdict)

    def refusal(self, refusal: _Refused, streaming: bool) -> Any:
        if streaming:
            return refused(self.call.reader().refusal(self.guard.refusal, after_text=False), refusal.verdict)
        return refused(self.call.refusal(self.guard.refusal), refusal.verdict)


def _role(message: Any) -> Any:
    return message.get("role") if isinstance(message, Mapping) else getattr(message, "role", None)
