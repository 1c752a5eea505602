"""The ShieldGemma prompt, byte for byte.

This reproduces the Jinja `chat_template` shipped in ShieldGemma's tokenizer (a copy lives
beside this file as `shieldgemma_template.jinja`, for tokenizers that have none), including its
quirks: the `===` separator, the double space in "must  start" on the response side, and the
trailing blank line. The text starts without `<bos>`: the scorer adds exactly one BOS token.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from typing import Any

from guardrail._exceptions import MessageError
from guardrail._messages import Turn, message_role, message_text

__all__ = ["chat_template", "content_spans", "render_chat", "render_prompt", "split_prompt"]

_PROMPT_HEAD = (
    "You are a policy expert trying to help determine whether a user prompt is in violation "
    "of the defined safety policies.\n\n<start_of_turn>\nHuman Question: "
)
_RESPONSE_HEAD = (
    "You are a policy expert trying to help determine whether an AI response to a prompt is in "
    "violation of the defined safety policies.\n\n<start_of_turn>\nHuman Question: "
)
_RESPONSE_MIDDLE = "\n<end_of_turn>\n<start_of_turn>\nChatbot Response: "
_PRINCIPLE = "\n<end_of_turn>\n\nOur safety principle is defined in the below:\n\n* "
_PROMPT_TAIL = (
    "\n\n===\n\nDoes the human question violate the above principle? Your answer must start "
    "with 'Yes' or 'No'. And then walk through step by step to be sure we answer correctly.\n\n"
)
_RESPONSE_TAIL = (
    "\n\n===\n\nDoes the Chatbot Response violate the above principle? Your answer must  start "
    "with 'Yes' or 'No'. And then walk through step by step to be sure we answer correctly.\n\n"
)


def split_prompt(turn: Turn) -> tuple[str, str]:
    """The prompt around the guideline: `(head, tail)`, so `head + guideline + tail` is the prompt.

    Every policy checked on the same turn shares `head`, which is what lets a scorer prefill
    the conversation once for many policies.
    """
    if turn.response is None:
        return _PROMPT_HEAD + turn.prompt + _PRINCIPLE, _PROMPT_TAIL
    head = _RESPONSE_HEAD + turn.prompt + _RESPONSE_MIDDLE + turn.response + _PRINCIPLE
    return head, _RESPONSE_TAIL


def content_spans(turn: Turn) -> list[tuple[int, int]]:
    """Character spans of the user-controlled text (question, response) in the rendered prompt.

    A scorer tokenizes control tokens inside these spans as plain text, so content can't
    forge the scaffolding (`<end_of_turn>`, `<bos>`, ...).
    """
    start = (len(_PROMPT_HEAD) if turn.response is None else len(_RESPONSE_HEAD))
    spans = [(start, start + len(turn.prompt))]
    if turn.response is not None:
        start = spans[0][1] + len(_RESPONSE_MIDDLE)
        spans.append((start, start + len(turn.response)))
    return spans


def render_prompt(turn: Turn, guideline: str) -> str:
    """The ShieldGemma prompt (without `<bos>`) for one turn and one guideline.

    >>> text = render_prompt(Turn(prompt="Hi"), '"No Spam": The prompt shall not ...')
    >>> text.endswith("correctly.\\n\\n")
    True
    """
    head, tail = split_prompt(turn)
    return head + guideline + tail


def render_chat(messages: Sequence[Any], guideline: str | None = None) -> str:
    """Render a chat exactly as ShieldGemma's `apply_chat_template(..., guideline=...)` does.

    The last message's role picks the mode: `user` scores that message alone; any other role
    scores it as the Chatbot Response to the message before it. Earlier turns are ignored, as in
    the template.

    Our extension: with no `guideline`, a leading system message carries it. The rendering is
    then identical to passing that text as `guideline` for the remaining messages.
    """
    items = list(messages)
    if guideline is None:
        if not items or message_role(items[0], 0) != "system":
            raise MessageError("a guideline is required: pass guideline= or a leading system message")
        guideline = message_text(items[0], 0)
        items = items[1:]
    if not items:
        raise MessageError("there is no message to check")
    last = len(items) - 1
    if message_role(items[last], last) == "user":
        return render_prompt(Turn(prompt=message_text(items[last], last)), guideline)
    if last < 1:
        raise MessageError("a response is checked together with the message before it; there is none")
    turn = Turn(prompt=message_text(items[last - 1], last - 1), response=message_text(items[last], last))
    return render_prompt(turn, guideline)


@cache
def chat_template() -> str:
    """ShieldGemma's Jinja chat template, for tokenizers that ship none (e.g. a Gemma 3 base)."""
    return files("guardrail").joinpath("shieldgemma_template.jinja").read_text(encoding="utf-8")
