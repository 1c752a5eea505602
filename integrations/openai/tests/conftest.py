"""Fixtures for the OpenAI adapter tests: a fake OpenAI server over HTTP and keyword guards."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from guardrail import Guard, builtin_policy
from guardrail.testing import KeywordScorer, RecordingScorer
from guardrail_openai.testing import FakeOpenAI

SAFE = "Bread needs flour, water, salt and yeast. Knead it well, let it rise, then bake it hot."
UNSAFE = "Bread needs flour and water. Then you kill the oven and the dough burns at once, sadly."


@pytest.fixture
def make_guard() -> Callable[..., Guard]:
    def make(action: str = "block", keywords: dict[str, float] | None = None) -> Guard:
        scorer = RecordingScorer(KeywordScorer(keywords or {"kill": 0.99}))
        return Guard([builtin_policy("dangerous", action=action)], scorer=scorer)

    return make


@pytest.fixture
def server() -> FakeOpenAI:
    return FakeOpenAI(SAFE)


@pytest.fixture
def unsafe_server() -> FakeOpenAI:
    return FakeOpenAI(UNSAFE)
