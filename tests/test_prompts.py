"""The rendered prompt must be byte-identical to ShieldGemma's chat template."""

from __future__ import annotations

import pytest

from guardrail import BUILTIN_POLICIES, MessageError, Stage, Turn, chat_template, render_chat, render_prompt
from guardrail._prompts import split_prompt

from shieldgemma_reference import GUIDELINES, R, U, reference_prompt_only, reference_response


@pytest.mark.parametrize("harm", ["dangerous", "harassment", "hate", "sexual"])
@pytest.mark.parametrize("stage", ["input", "output"])
def test_builtin_guidelines_are_the_model_card_texts(harm: str, stage: str) -> None:
    assert BUILTIN_POLICIES[harm].guideline(stage) == GUIDELINES[harm, stage]


@pytest.mark.parametrize("harm", ["dangerous", "harassment", "hate", "sexual"])
def test_prompt_only_matches_reference_byte_for_byte(harm: str) -> None:
    g = BUILTIN_POLICIES[harm].guideline(Stage.INPUT)
    assert "<bos>" + render_prompt(Turn(prompt=U), g) == reference_prompt_only(U, GUIDELINES[harm, "input"])


@pytest.mark.parametrize("harm", ["dangerous", "harassment", "hate", "sexual"])
def test_prompt_response_matches_reference_byte_for_byte(harm: str) -> None:
    g = BUILTIN_POLICIES[harm].guideline(Stage.OUTPUT)
    assert "<bos>" + render_prompt(Turn(prompt=U, response=R), g) == reference_response(U, R, GUIDELINES[harm, "output"])


def test_response_epilogue_keeps_the_double_space_quirk() -> None:
    text = render_prompt(Turn(prompt="q", response="r"), "G")
    assert "Your answer must  start" in text and text.endswith("correctly.\n\n")
    assert "Your answer must start" in render_prompt(Turn(prompt="q"), "G")


def test_split_prompt_puts_the_guideline_between_shared_head_and_tail() -> None:
    turn = Turn(prompt=U, response=R)
    head, tail = split_prompt(turn)
    assert head + "G" + tail == render_prompt(turn, "G")
    assert head.endswith("* ") and tail.startswith("\n\n===")


class TestRenderChat:
    def test_last_user_message_picks_prompt_only_and_ignores_history(self) -> None:
        chat = [
            {"role": "user", "content": "old question"},
            {"role": "assistant", "content": "old answer"},
            {"role": "user", "content": U},
        ]
        assert render_chat(chat, guideline="G") == render_prompt(Turn(prompt=U), "G")

    @pytest.mark.parametrize("role", ["assistant", "system", "tool"])
    def test_any_other_last_role_is_response_mode_with_the_message_before(self, role: str) -> None:
        chat = [{"role": "user", "content": U}, {"role": role, "content": R}]
        assert render_chat(chat, guideline="G") == render_prompt(Turn(prompt=U, response=R), "G")

    def test_leading_system_message_is_ignored_when_a_guideline_is_given(self) -> None:
        chat = [{"role": "system", "content": "be nice"}, {"role": "user", "content": U}]
        assert render_chat(chat, guideline="G") == render_prompt(Turn(prompt=U), "G")

    @pytest.mark.parametrize("tail", [[{"role": "user", "content": U}],
                                      [{"role": "user", "content": U}, {"role": "assistant", "content": R}]])
    def test_system_message_as_guideline_reduces_to_the_explicit_guideline(self, tail: list) -> None:
        g = GUIDELINES["hate", "input"]
        assert render_chat([{"role": "system", "content": g}, *tail]) == render_chat(tail, guideline=g)

    def test_without_any_guideline_it_fails_clearly(self) -> None:
        with pytest.raises(MessageError, match="guideline is required"):
            render_chat([{"role": "user", "content": U}])

    def test_a_lone_response_has_no_question_and_fails_clearly(self) -> None:
        with pytest.raises(MessageError, match="message before it"):
            render_chat([{"role": "assistant", "content": R}], guideline="G")


@pytest.mark.slow
class TestAgainstTheJinjaTemplate:
    """Our rendering and tokenization equal `apply_chat_template` with ShieldGemma's template."""

    CHATS = [
        [{"role": "user", "content": U}],
        [{"role": "user", "content": U}, {"role": "assistant", "content": R}],
        [{"role": "system", "content": "x"}, {"role": "user", "content": "Tabs\tand ünïcödé 🙂"}],
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "tool", "content": "c"}],
    ]

    @pytest.mark.parametrize("chat", CHATS)
    @pytest.mark.parametrize("harm", ["dangerous", "harassment", "hate", "sexual"])
    def test_text_and_tokens_match(self, gemma3_tokenizer, chat: list, harm: str) -> None:  # noqa: ANN001
        from guardrail._tokens import encode_prompt

        stage = "input" if chat[-1]["role"] == "user" else "output"
        g = GUIDELINES[harm, stage]
        tokenizer = gemma3_tokenizer
        ours = render_chat(chat, guideline=g)
        theirs = tokenizer.apply_chat_template(chat, chat_template=chat_template(), guideline=g, tokenize=False)
        assert theirs == "<bos>" + ours
        ids = tokenizer.apply_chat_template(chat, chat_template=chat_template(), guideline=g, tokenize=True)["input_ids"]
        assert encode_prompt(tokenizer, ours) == list(ids)
        assert list(ids).count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id

    def test_cached_embedded_tokenizer_ships_the_template(self, gemma3_tokenizer) -> None:  # noqa: ANN001
        assert gemma3_tokenizer.chat_template == chat_template()

    def test_the_template_requires_a_guideline(self, gemma3_tokenizer) -> None:  # noqa: ANN001
        with pytest.raises(Exception, match="guideline"):
            gemma3_tokenizer.apply_chat_template([{"role": "user", "content": U}], chat_template=chat_template(), tokenize=False)

