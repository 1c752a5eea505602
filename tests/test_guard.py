"""Guard, verdicts and the scorer wrapper, with fake scorers (no model)."""

from __future__ import annotations

import asyncio
import math

import pytest

from guardrail import (
    Action,
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


class TestFailClosed:
    @pytest.mark.parametrize(
        ("fake", "match"),
        [
            (FunctionScorer(lambda r: math.nan), "must be in"),
            (FunctionScorer(lambda r: 1.5), "must be in"),
            (FunctionScorer(lambda r: -0.1), "must be in"),
            (FunctionScorer(lambda r: "high"), "non-numeric"),
        ],
    )
    def test_garbage_scores_are_errors(self, fake: FunctionScorer, match: str) -> None:
        with pytest.raises(ScorerError, match=match):
            Guard(["hate"], scorer=fake).check_input("x")

    def test_wrong_number_of_scores_is_an_error(self) -> None:
        class Short:
            def score(self, requests):  # noqa: ANN001, ANN202
                return [0.1]

        with pytest.raises(ScorerError, match="1 scores for 2 requests"):
            Guard(["hate", "sexual"], scorer=Short()).check_input("x")

    def test_a_failing_scorer_raises_scorer_error_sync_and_async(self) -> None:
        def boom(request):  # noqa: ANN001, ANN202
            raise OSError("connection reset")

        guard = Guard(["hate"], scorer=FunctionScorer(boom))
        with pytest.raises(ScorerError, match="connection reset"):
            guard.check_input("x")
        with pytest.raises(ScorerError, match="connection reset"):
            asyncio.run(guard.acheck_input("x"))


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
        assert isinstance(guard.scorer, EmbeddedScorer) and guard.scorer._scorer is None

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
