"""The `langchain-tests` standard unit tests for `GuardedChatModel`."""

from __future__ import annotations

from typing import Any

from guardrail import Guard
from guardrail.testing import KeywordScorer
from langchain_tests.unit_tests import ChatModelUnitTests

from guardrail_langchain import GuardedChatModel
from guardrail_langchain.testing import ScriptedChatModel


class TestGuardedChatModelStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[GuardedChatModel]:
        return GuardedChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "chat_model": ScriptedChatModel(responses=["Hello there."]),
            "guard": Guard(["dangerous"], scorer=KeywordScorer({"bomb": 0.99})),
        }
