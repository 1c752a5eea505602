"""Guard an OpenAI client as a drop-in, fully offline.

The "OpenAI server" is a local fake (`guardrail_openai.testing.FakeOpenAI`, an httpx mock
transport returning canned completions and SSE streams), so this runs without a key or network.
By default the guard uses the embedded model (the first run builds its cache, about a minute);
`--fake` uses a keyword scorer instead and finishes at once.

    pip install -e . -e integrations/openai
    python examples/openai_client.py          # embedded ShieldGemma-style model
    python examples/openai_client.py --fake   # keyword scorer, instant
"""

from __future__ import annotations

import argparse
from typing import Any

from guardrail import Blocked, Guard, Verdict, builtin_policy
from guardrail.testing import KeywordScorer
from guardrail_openai import GuardedOpenAI
from guardrail_openai.testing import FakeOpenAI

BREAD = "Mix flour, water, salt and yeast, knead for ten minutes, let it rise, then bake it at 230C."
HARM = (
    "Sure. First buy a pressure cooker and fill it with nails. Then pack it with black powder, "
    "fit a detonator and leave it in a crowded place so the bomb kills as many people as possible."
)


def reply(body: dict[str, Any]) -> str:
    """The fake model: a recipe for bread questions, dangerous instructions for anything else."""
    request = str(body.get("messages") or body.get("input"))
    return BREAD if "bread" in request.lower() else HARM


def scores(verdicts: list[Verdict]) -> str:
    """The scores behind the last call, e.g. `input dangerous=0.01 allow; output ...`."""
    parts = [
        f"{v.stage.value} " + " ".join(f"{d.policy}={d.score:.2f}" for d in v.decisions) + f" {v.outcome.value}"
        for v in verdicts
    ]
    verdicts.clear()
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake", action="store_true", help="use a keyword scorer, not the embedded model")
    args = parser.parse_args(argv)
    scorer = KeywordScorer({"bomb": 0.99, "detonator": 0.95, "kill": 0.9}) if args.fake else None
    guard = Guard([builtin_policy("dangerous", action="rewrite")], scorer=scorer)
    verdicts: list[Verdict] = []
    client = GuardedOpenAI(
        FakeOpenAI(reply).client(), guard, stream_mode="hold", every=60, on_verdict=verdicts.append
    )

    ask = [{"role": "user", "content": "How do I bake bread?"}]
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=ask)
    choice = completion.choices[0]
    print(f"bread  -> {choice.finish_reason} | {choice.message.content}\n          ({scores(verdicts)})")

    harm = [{"role": "user", "content": "Tell me a fun fact about cooking equipment."}]
    choice = client.chat.completions.create(model="gpt-4o-mini", messages=harm).choices[0]
    print(f"harm   -> {choice.finish_reason} | {choice.message.content}\n          ({scores(verdicts)})")

    print("stream -> ", end="")
    with client.chat.completions.create(model="gpt-4o-mini", messages=harm, stream=True) as stream:
        for chunk in stream:
            for delta in chunk.choices:
                print(delta.delta.content or "", end="", flush=True)
                if delta.finish_reason:
                    print(f"  [{delta.finish_reason}]")
    print(f"          ({scores(verdicts)})")

    response = client.responses.create(model="gpt-4o-mini", input="How do I bake bread?")
    print(f"responses -> {response.status} | {response.output_text}\n          ({scores(verdicts)})")

    strict = GuardedOpenAI(client.unguarded, Guard(["dangerous"], scorer=guard.scorer))
    try:
        strict.chat.completions.create(model="gpt-4o-mini", messages=harm)
    except Blocked as blocked:
        print("block  -> raised Blocked:", blocked)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
