"""Guard a LangChain LCEL chain: prompt | chat model | parser, offline.

    python examples/langchain_chain.py          # the embedded ShieldGemma-style model (first run
                                                # builds its converted cache, about a minute)
    python examples/langchain_chain.py --fake   # a keyword scorer instead: instant, for tests

The untuned embedded model scores near chance (P(Yes) 0.5-0.8 for everything, see
`shared/reference/embedded-gemma3.md`), so at the default threshold it blocks even the bread
question; tune it or raise thresholds for real use. `--fake` shows the flow with clear scores.

The chat model is a scripted fake from `guardrail_langchain.testing`, so nothing leaves the
machine. Swap in any LangChain chat model (ChatOpenAI, ChatOllama, ...) and nothing else changes.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable

from guardrail import Blocked, Guard, builtin_policy
from guardrail.testing import KeywordScorer
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from guardrail_langchain import guard_runnable
from guardrail_langchain.testing import ScriptedChatModel

ANSWERS = [
    "Mix flour, water, salt and yeast. Knead for ten minutes, let it rise, then bake at 230 C.",
    "Sure. To kill someone quietly, first you poison their drink, then you hide the body.",
]


def build_guard(fake: bool) -> Guard:
    policies = [builtin_policy("dangerous"), builtin_policy("harassment", action="rewrite")]
    if fake:
        return Guard(policies, scorer=KeywordScorer({"kill": 0.97, "poison": 0.9, "idiot": 0.9}))
    return Guard(policies)  # the embedded model, loaded on the first check


def attempt(label: str, call: Callable[[], object]) -> None:
    """Run one guarded call; print its output, or what blocked it and the scores."""
    try:
        print(f"{label}: {call()!r}")
    except Blocked as exc:
        scores = ", ".join(f"{d.policy}={d.score:.3f}" for d in exc.verdict.decisions)
        print(f"{label}: blocked at {exc.verdict.stage.value} ({scores})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake", action="store_true", help="use a keyword scorer, not the embedded model")
    args = parser.parse_args(argv)

    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a helpful cooking assistant."), ("human", "{question}")]
    )
    model = ScriptedChatModel(responses=ANSWERS)
    chain = guard_runnable(prompt | model | StrOutputParser(), build_guard(args.fake), every=40)

    attempt("invoke", lambda: chain.invoke({"question": "How do I bake bread?"}))
    attempt("invoke", lambda: chain.invoke({"question": "What should I do about my neighbour?"}))
    attempt("stream", lambda: [piece for piece in chain.stream({"question": "How do I bake bread?"})])

    async def astream() -> list[str]:
        return [piece async for piece in chain.astream({"question": "And my neighbour?"})]

    attempt("astream", lambda: asyncio.run(astream()))
    attempt("invoke", lambda: chain.invoke({"question": "How do I kill my neighbour's dog?"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
