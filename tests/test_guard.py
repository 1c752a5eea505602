"""Guard, verdicts and the scorer wrapper, with fake scorers (no model)."""

from __future__ import annotations

import asyncio
import math

import pytest

from guardrail import (
    Action,
    BatchingScorer,
    Blocked,
    ConfigError,
    Guard,
    MessageError,
    Outcome,
    Policy,
    ScorerError,
    Stage,
    builtin_policy,
)
from guardrail.testing import FunctionScorer, KeywordScorer, RecordingScorer, check_scorer_contract

CHAT = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": "Tell me how to build a bomb"},
    {"role": "assistant", "content": "Here is how to build a bomb: ..."},
]


def keyword_guard(**policy_changes: object) -> Guard:
    policies = [builtin_policy(name, **policy_changes) for name in ("dangerous", "hate")]
    return Guard(policies, scorer=KeywordScorer({"bomb": 0.95}, policies=['"No Dangerous']))


class TestSelection:
    def test_input_scores_the_latest_user_turn_with_prompt_only_guidelines(self) -> None:
        recorder = RecordingScorer(KeywordScorer({}))
        Guard(["dangerous", "hate"], scorer=recorder).check_input(CHAT[:4])
        assert [r.turn.prompt for r in recorder.requests] == ["Tell me how to build a bomb"] * 2
        assert all(r.turn.response is None for r in recorder.requests)
        assert all("The prompt shall not" in r.guideline for r in recorder.requests)

    def test_output_scores_the_latest_assistant_turn_with_its_user_turn(self) -> None:
        recorder = RecordingScorer(KeywordScorer({}))
        Guard(["dangerous"], scorer=recorder).check_output(CHAT)
        (request,) = recorder.requests
        assert request.turn.prompt == "Tell me how to build a bomb"
        assert request.turn.response == "Here is how to build a bomb: ..."
        assert "The chatbot shall not generate" in request.guideline

    def test_policies_only_run_in_their_stages(self) -> None:
        recorder = RecordingScorer(KeywordScorer({}))
        only_input = builtin_policy("hate", stages=["input"])
        guard = Guard([only_input, "dangerous"], scorer=recorder)
        verdict = guard.check_output(CHAT)
        assert [d.policy for d in verdict.decisions] == ["dangerous"]

    def test_content_parts_are_joined_and_scored(self) -> None:
        recorder = RecordingScorer(KeywordScorer({}))
        parts = [{"type": "text", "text": "part one"}, {"type": "input_text", "text": "part two"}]
        Guard(["hate"], scorer=recorder).check_input([{"role": "user", "content": parts}])
        assert recorder.requests[0].turn.prompt == "part one\npart two"

    def test_a_plain_string_is_a_user_message(self) -> None:
        verdict = keyword_guard().check_input("how to build a bomb")
        assert verdict.blocked

    @pytest.mark.parametrize(
        ("messages", "stage", "match"),
        [
            ([], "input", "empty"),
            ([{"role": "assistant", "content": "x"}], "input", "role 'user'"),
            ([{"role": "user", "content": "x"}], "output", "role 'assistant'"),
            ([{"role": "user", "content": None}], "input", "'content' must be"),
            ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], "input", "only text parts"),
            ([{"content": "no role"}], "input", "'role'"),
            ({"role": "user", "content": "a dict, not a list"}, "input", "sequence of messages"),
            (42, "input", "sequence of messages"),
        ],
    )
    def test_bad_messages_raise_a_typed_error(self, messages: object, stage: str, match: str) -> None:
        with pytest.raises(MessageError, match=match):
            keyword_guard().check(messages, stage)

    def test_output_without_a_user_turn_uses_an_empty_question(self) -> None:
        recorder = RecordingScorer(KeywordScorer({}))
        Guard(["hate"], scorer=recorder).check_output([{"role": "assistant", "content": "hi"}])
        assert recorder.requests[0].turn.prompt == ""


class TestVerdict:
    def test_block_is_a_value_until_asked_to_raise(self) -> None:
        verdict = keyword_guard().check_output(CHAT)
        assert verdict.blocked and not verdict.allowed and verdict.outcome is Outcome.BLOCK
        assert [d.policy for d in verdict.blocking] == ["dangerous"]
        with pytest.raises(Blocked) as caught:
            verdict.raise_for_block()
        assert caught.value.verdict is verdict
        assert "dangerous" in str(caught.value)

    def test_allowed_verdict_returns_itself(self) -> None:
        verdict = keyword_guard().check_input("bake bread")
        assert verdict.allowed and verdict.raise_for_block() is verdict
        assert [d.score for d in verdict.decisions] == [0.01, 0.01]

    def test_threshold_is_inclusive(self) -> None:
        verdict = keyword_guard(threshold=0.95).check_input("bomb")
        assert verdict.blocked
        verdict = keyword_guard(threshold=0.96).check_input("bomb")
        assert verdict.allowed

    def test_rewrite_replaces_the_offending_message_with_the_refusal(self) -> None:
        guard = Guard(
            [builtin_policy("dangerous", action="rewrite")],
            scorer=KeywordScorer({"bomb": 0.9}),
            refusal="Sorry, no.",
        )
        verdict = guard.check_output(CHAT)
        assert verdict.rewritten and not verdict.allowed and not verdict.blocked
        rewritten = verdict.apply(CHAT)
        assert rewritten[4] == {"role": "assistant", "content": "Sorry, no."}
        assert rewritten[:4] == CHAT[:4] and CHAT[4]["content"].startswith("Here is")

    def test_flag_allows_and_annotates(self) -> None:
        guard = Guard([builtin_policy("dangerous", action="flag")], scorer=KeywordScorer({"bomb": 0.9}))
        verdict = guard.check_input("bomb")
        assert verdict.allowed and verdict.outcome is Outcome.FLAG
        assert [d.policy for d in verdict.flags] == ["dangerous"]
        assert verdict.apply(CHAT) == CHAT

    def test_block_beats_rewrite_beats_flag(self) -> None:
        policies = [
            builtin_policy("dangerous", action="flag"),
            builtin_policy("hate", action="rewrite"),
            builtin_policy("sexual", action="block"),
        ]
        scores = {"flag": (0.9, 0.1, 0.1), "rewrite": (0.9, 0.9, 0.1), "block": (0.9, 0.9, 0.9)}
        for expected, triple in scores.items():
            by_policy = dict(zip(("Dangerous", "Hate", "Sexually"), triple))
            scorer = FunctionScorer(lambda r: next(v for k, v in by_policy.items() if f'"No {k}' in r.guideline))
            assert Guard(policies, scorer=scorer).check_input("x").outcome.value == expected

    def test_to_dict_is_json_ready(self) -> None:
        data = keyword_guard().check_input("bomb").to_dict()
        assert data["outcome"] == "block" and data["stage"] == "input"
        assert data["decisions"][0] == {
            "policy": "dangerous", "score": 0.95, "threshold": 0.5, "action": "block", "triggered": True,
        }


def failing(request):  # noqa: ANN001, ANN201
    raise OSError("connection reset")


class TestFailModes:
    GARBAGE = [
        (FunctionScorer(lambda r: math.nan), "must be in"),
        (FunctionScorer(lambda r: 1.5), "must be in"),
        (FunctionScorer(lambda r: -0.1), "must be in"),
        (FunctionScorer(lambda r: "high"), "non-numeric"),
        (FunctionScorer(failing), "connection reset"),
    ]

    @pytest.mark.parametrize(("fake", "match"), GARBAGE)
    def test_by_default_a_scorer_failure_blocks(self, fake: FunctionScorer, match: str) -> None:
        verdict = Guard(["hate", builtin_policy("sexual", action="flag")], scorer=fake).check_input("x")
        assert verdict.blocked and not verdict.allowed
        assert [d.policy for d in verdict.errors] == ["hate", "sexual"]
        assert all(match in d.error and math.isnan(d.score) for d in verdict.errors)
        with pytest.raises(Blocked, match="failed closed"):
            verdict.raise_for_block()

    @pytest.mark.parametrize(("fake", "match"), GARBAGE)
    def test_raise_mode_propagates_a_scorer_error(self, fake: FunctionScorer, match: str) -> None:
        guard = Guard([builtin_policy("hate", on_error="raise"), "sexual"], scorer=fake)
        with pytest.raises(ScorerError, match=match):
            guard.check_input("x")
        with pytest.raises(ScorerError, match=match):
            asyncio.run(guard.acheck_input("x"))

    def test_allow_mode_fails_open_and_says_so(self) -> None:
        guard = Guard([builtin_policy("hate", on_error="allow")], scorer=FunctionScorer(failing))
        verdict = guard.check_input("x")
        assert verdict.allowed and verdict.errors and verdict.to_dict()["decisions"][0]["error"]

    def test_wrong_number_of_scores_is_an_error(self) -> None:
        class Short:
            def score(self, requests):  # noqa: ANN001, ANN202
                return [0.1]

        guard = Guard([builtin_policy("hate", on_error="raise"), "sexual"], scorer=Short())
        with pytest.raises(ScorerError, match="1 scores for 2 requests"):
            guard.check_input("x")

    def test_a_hanging_scorer_times_out_and_blocks_sync_and_async(self) -> None:
        import threading
        import time

        release = threading.Event()

        class Hangs:
            def score(self, requests):  # noqa: ANN001, ANN202
                release.wait(10)
                return [0.0 for _ in requests]

            async def ascore(self, requests):  # noqa: ANN001, ANN202
                await asyncio.sleep(10)

        guard = Guard(["hate"], scorer=Hangs(), timeout=0.05)
        start = time.monotonic()
        verdict = guard.check_input("x")
        assert verdict.blocked and "timed out" in verdict.errors[0].error
        verdict = asyncio.run(guard.acheck_input("x"))
        assert verdict.blocked and "timed out" in verdict.errors[0].error
        assert time.monotonic() - start < 2
        release.set()

    def test_retries_recover_from_a_transient_failure(self) -> None:
        calls = []

        def flaky(request):  # noqa: ANN001, ANN202
            calls.append(1)
            if len(calls) == 1:
                raise OSError("503")
            return 0.2

        verdict = Guard(["hate"], scorer=FunctionScorer(flaky), retries=2).check_input("x")
        assert verdict.allowed and not verdict.errors and len(calls) == 2

    def test_the_budget_bounds_all_attempts(self) -> None:
        import time

        class Slow:
            def score(self, requests):  # noqa: ANN001, ANN202
                time.sleep(0.2)
                raise OSError("still down")

        start = time.monotonic()
        verdict = Guard(["hate"], scorer=Slow(), retries=50, budget=0.5).check_input("x")
        assert verdict.blocked and time.monotonic() - start < 1.5

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [({"timeout": 0}, "timeout"), ({"budget": -1}, "budget"), ({"retries": -1}, "retries"),
         ({"windows": 100}, "windows"), ({"observers": [1]}, "observers")],
    )
    def test_bad_reliability_options(self, kwargs: dict, match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            Guard(["hate"], scorer=KeywordScorer({}), **kwargs)


class TestObservers:
    def test_every_verdict_reaches_the_observers_sync_and_async(self) -> None:
        seen = []
        guard = Guard(["hate"], scorer=KeywordScorer({}), observers=[seen.append])
        a = guard.check_input("x")
        b = asyncio.run(guard.acheck_output([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]))
        c = Guard(["hate"], scorer=FunctionScorer(failing), observers=[seen.append]).check_input("x")
        assert seen == [a, b, c]

    def test_an_observer_that_fails_fails_the_check(self) -> None:
        def broken(verdict):  # noqa: ANN001, ANN202
            raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            Guard(["hate"], scorer=KeywordScorer({}), observers=[broken]).check_input("x")


class TestWindows:
    BENIGN = "The committee reviewed the harbour budget and approved new benches for the park. "

    def test_short_content_is_one_window(self) -> None:
        assert len(Guard(["hate"], scorer=KeywordScorer({})).requests("short", "input")) == 1

    @pytest.mark.parametrize("position", [0.0, 0.13, 0.5, 0.77, 0.999])
    def test_a_harmful_sentence_is_caught_wherever_it_hides(self, position: float) -> None:
        from guardrail import Windows

        document = self.BENIGN * 1000  # ~80,000 characters, ~20,000 tokens
        at = int(len(document) * position)
        document = document[:at] + " Build a pipe bomb tonight. " + document[at:]
        recorder = RecordingScorer(KeywordScorer({"pipe bomb": 0.99}))
        guard = Guard(["dangerous"], scorer=recorder, windows=Windows(size=4000, overlap=400))
        verdict = guard.check_input(document)
        assert verdict.blocked and verdict.decisions[0].score == 0.99
        windows = [r.turn.prompt for r in recorder.requests]
        assert len(windows) > 20 and all(len(w) <= 4000 for w in windows)
        assert "".join(w[:-400] for w in windows[:-1]) + windows[-1] == document  # full coverage

    def test_windows_cover_the_response_in_the_output_stage(self) -> None:
        from guardrail import Windows

        response = self.BENIGN * 100 + "You are worthless vermin." + self.BENIGN * 3
        recorder = RecordingScorer(KeywordScorer({"vermin": 0.9}))
        guard = Guard(["harassment"], scorer=recorder, windows=Windows(size=2000, overlap=200))
        verdict = guard.check_output([{"role": "user", "content": "q"}, {"role": "assistant", "content": response}])
        assert verdict.blocked and all(r.turn.prompt == "q" for r in recorder.requests)
        assert len(recorder.requests) > 3

    @pytest.mark.parametrize(("size", "overlap"), [(100, 50), (100, -1), (0, 0)])
    def test_bad_windows(self, size: int, overlap: int) -> None:
        from guardrail import Windows

        with pytest.raises(ConfigError, match="windows"):
            Windows(size=size, overlap=overlap)

    def test_bad_prompt_tail(self) -> None:
        from guardrail import Windows

        for value in (-1, 2.5, True):
            with pytest.raises(ConfigError, match="windows.prompt_tail"):
                Windows(prompt_tail=value)

    def test_the_output_stage_scores_the_tail_of_a_long_prompt(self) -> None:
        from guardrail import Windows

        class ContextLimited:
            """Fails like a model over its context: prompts above 4,000 characters are errors."""

            def score(self, requests):  # noqa: ANN001, ANN202
                if any(len(r.prompt) > 4000 for r in requests):
                    raise ScorerError("over the context")
                return [0.9 if "vermin" in r.turn.response else 0.01 for r in requests]

        prompt = self.BENIGN * 200 + "Now the closing question about the benches?"  # ~16,000 chars
        recorder = RecordingScorer(ContextLimited())
        guard = Guard(["harassment"], scorer=recorder, windows=Windows(prompt_tail=1000))
        chat = [{"role": "user", "content": prompt}, {"role": "assistant", "content": "You are vermin."}]
        verdict = guard.check_output(chat)
        assert verdict.blocked and not verdict.errors  # scored, not failed over the context
        (request,) = recorder.requests
        tail = request.turn.prompt
        assert prompt.endswith(tail) and 750 <= len(tail) <= 1000 and tail[0] != " "
        assert prompt[len(prompt) - len(tail) - 1] == " "  # the tail starts at a word
        assert verdict.turn.prompt == prompt  # the verdict keeps the whole prompt
        inputs = [r.turn.prompt for r in guard.requests(prompt, "input")]  # the input stage judges all of it
        assert len(inputs) == 3 and inputs[0].startswith(self.BENIGN) and inputs[-1].endswith("benches?")

    def test_every_response_window_gets_the_same_prompt_tail(self) -> None:
        from guardrail import Windows

        recorder = RecordingScorer(KeywordScorer({}))
        guard = Guard(["hate"], scorer=recorder, windows=Windows(size=2000, overlap=200, prompt_tail=50))
        guard.check_output([{"role": "user", "content": "x" * 60 + " the real question"},
                            {"role": "assistant", "content": self.BENIGN * 60}])
        prompts = {r.turn.prompt for r in recorder.requests}
        assert len(recorder.requests) > 2 and prompts == {"x" * 32 + " the real question"}

    def test_prompt_tail_cuts_at_whitespace_when_one_is_near(self) -> None:
        from guardrail._windows import prompt_tail

        assert prompt_tail("alpha beta gamma delta", 12) == "gamma delta"
        assert prompt_tail("alpha beta gamma delta", 11) == "gamma delta"  # already at a word
        assert prompt_tail("short", 100) == "short" and prompt_tail("anything", 0) == ""
        assert prompt_tail("a" * 100, 10) == "a" * 10  # no whitespace: a hard cut
        assert prompt_tail("a b" + "c" * 100, 10) == "c" * 10  # whitespace too far back: a hard cut

    def test_windows_none_scores_the_whole_prompt(self) -> None:
        recorder = RecordingScorer(KeywordScorer({}))
        prompt = self.BENIGN * 40
        Guard(["hate"], scorer=recorder, windows=None).check_output(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": "ok"}])
        assert recorder.requests[0].turn.prompt == prompt


class SlowLoad:
    """A lazily loading scorer: `load()` takes `seconds`; scoring is instant."""

    def __init__(self, seconds: float = 0.0, error: Exception | None = None) -> None:
        self.seconds = seconds
        self.error = error
        self.loads = 0
        self.is_loaded = False

    def load(self) -> None:
        import time

        self.loads += 1
        time.sleep(self.seconds)
        if self.error is not None:
            raise self.error
        self.is_loaded = True

    def score(self, requests):  # noqa: ANN001, ANN202
        if not self.is_loaded:
            raise RuntimeError("scored before load()")
        return [0.01] * len(requests)


class TestLoading:
    def test_a_slow_load_does_not_count_against_timeout_or_budget(self) -> None:
        scorer = SlowLoad(seconds=0.5)
        guard = Guard(["hate"], scorer=scorer, timeout=0.1, budget=0.2)
        verdict = guard.check_input("hello")
        assert verdict.allowed and not verdict.errors and scorer.loads == 1
        guard.check_input("again")
        assert scorer.loads == 1

    async def test_async_load_is_outside_the_timeout_too(self) -> None:
        scorer = SlowLoad(seconds=0.5)
        verdict = await Guard(["hate"], scorer=scorer, timeout=0.1).acheck_input("hello")
        assert verdict.allowed and not verdict.errors and scorer.loads == 1

    def test_warm_up_loads_at_construction_or_on_demand(self) -> None:
        eager = SlowLoad()
        Guard(["hate"], scorer=eager, warm_up=True)
        assert eager.loads == 1
        lazy = SlowLoad()
        guard = Guard(["hate"], scorer=lazy)
        assert lazy.loads == 0 and guard.warm_up() is guard and lazy.loads == 1
        guard.warm_up()
        assert lazy.loads == 1

    def test_wrappers_forward_load(self) -> None:
        from guardrail import BatchingScorer, TracedScorer

        inner = SlowLoad()
        Guard(["hate"], scorer=RecordingScorer(BatchingScorer(TracedScorer(inner))), warm_up=True)
        assert inner.loads == 1

    def test_a_failed_load_is_a_scorer_error_and_the_fail_mode_decides(self) -> None:
        verdict = Guard(["hate"], scorer=SlowLoad(error=OSError("disk"))).check_input("x")
        assert verdict.blocked and "failed to load" in verdict.errors[0].error
        with pytest.raises(ScorerError, match="failed to load"):
            Guard(["hate"], scorer=SlowLoad(error=OSError("disk")), warm_up=True)

    def test_a_missing_model_is_a_config_error_not_a_verdict(self) -> None:
        with pytest.raises(ConfigError, match="no model here"):
            Guard(["hate"], scorer=SlowLoad(error=ConfigError("no model here"))).check_input("x")

    def test_drain_waits_for_a_timed_out_call(self) -> None:
        import threading

        release = threading.Event()
        guard = Guard(["hate"], scorer=FunctionScorer(lambda r: release.wait(5) and 0.01), timeout=0.05)
        assert guard.check_input("x").errors
        assert guard.drain(timeout=0.01) is False  # still running
        release.set()
        assert guard.drain() is True


class TestAsync:
    CASES = [("input", CHAT[:4]), ("output", CHAT), ("input", "bake bread")]

    @pytest.mark.parametrize(("stage", "messages"), CASES)
    async def test_async_equals_sync(self, stage: str, messages: object) -> None:
        guard = keyword_guard()
        assert await guard.acheck(messages, stage) == guard.check(messages, stage)

    async def test_native_ascore_is_used_when_present(self) -> None:
        class Native:
            calls = 0

            def score(self, requests):  # noqa: ANN001, ANN202
                raise AssertionError("the sync path must not be used")

            async def ascore(self, requests):  # noqa: ANN001, ANN202
                Native.calls += 1
                return [0.2 for _ in requests]

        verdict = await Guard(["hate"], scorer=Native()).acheck_input("x")
        assert Native.calls == 1 and verdict.decisions[0].score == 0.2


class TestConstruction:
    def test_defaults_to_the_four_reported_harms(self) -> None:
        guard = Guard(scorer=KeywordScorer({}))
        assert [p.name for p in guard.policies] == ["dangerous", "harassment", "hate", "sexual"]

    def test_default_scorer_is_the_lazy_embedded_model(self) -> None:
        from guardrail._embedded import EmbeddedScorer

        guard = Guard(["hate"])
        # Behind a BatchingScorer now: batching is composed around the scorer, not inside it.
        assert isinstance(guard.scorer, BatchingScorer)
        assert isinstance(guard.scorer.inner, EmbeddedScorer) and guard.scorer.inner._scorer is None

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"policies": ["nope"]}, "unknown built-in policy 'nope'"),
            ({"policies": ["hate", "hate"]}, "repeated: hate"),
            ({"policies": []}, "at least one policy"),
            ({"policies": ["hate"], "scorer": object()}, "score\\(requests\\)"),
            ({"policies": ["hate"], "refusal": ""}, "refusal"),
        ],
    )
    def test_bad_construction_raises_config_error(self, kwargs: dict, match: str) -> None:
        kwargs.setdefault("scorer", KeywordScorer({}))
        with pytest.raises(ConfigError, match=match):
            Guard(**kwargs)

    def test_fakes_meet_the_scorer_contract(self) -> None:
        check_scorer_contract(KeywordScorer({"bread": 0.3}))
        check_scorer_contract(FunctionScorer(lambda r: len(r.prompt) % 7 / 7))


class TestPolicy:
    def test_custom_policy_with_both_phrasings(self) -> None:
        p = Policy(name="spam", input_guideline="in text", output_guideline="out text", action=Action.FLAG)
        assert p.stages == frozenset(Stage) and p.guideline("output") == "out text"

    def test_with_threshold_returns_a_new_policy(self) -> None:
        p = builtin_policy("hate")
        q = p.with_threshold(0.2)
        assert (p.threshold, q.threshold, q.input_guideline) == (0.5, 0.2, p.input_guideline)

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"name": ""}, "non-empty"),
            ({"threshold": 1.5}, "in \\[0, 1\\]"),
            ({"threshold": math.nan}, "in \\[0, 1\\]"),
            ({"threshold": True}, "number"),
            ({"action": "delete"}, "'block', 'rewrite', 'flag'"),
            ({"stages": ["output"]}, "no output_guideline"),
            ({"stages": ["middle"]}, "'input', 'output'"),
            ({"input_guideline": "* starts with a bullet"}, "must not start"),
            ({"input_guideline": None}, "at least one guideline"),
        ],
    )
    def test_invalid_policies_raise_config_error(self, kwargs: dict, match: str) -> None:
        fields = {"name": "x", "input_guideline": "no spam", **kwargs}
        with pytest.raises(ConfigError, match=match):
            Policy(**fields)

    def test_violence_and_obscenity_have_both_phrasings(self) -> None:
        for name in ("violence", "obscenity"):
            p = builtin_policy(name)
            assert p.guideline("input").split(": ", 1)[1].startswith("The prompt shall not")
            assert p.guideline("output").split(": ", 1)[1].startswith("The chatbot shall not generate content that")
