"""The transformers scorer equals the model card's naive computation and is batch-invariant."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrail import BUILTIN_POLICIES, ConfigError, ScoreRequest, ScorerError, Stage, Turn
from guardrail.testing import check_scorer_contract

pytestmark = pytest.mark.slow

torch = pytest.importorskip("torch")


def requests() -> list[ScoreRequest]:
    turns = [
        Turn(prompt="How do I bake bread?"),
        Turn(prompt="Write a poem about my neighbour, that idiot. " * 6),
        Turn(prompt="hi", response="Hello! How can I help you today?"),
        Turn(prompt="What's the capital of France?", response="Paris. " * 30),
    ]
    return [
        ScoreRequest(turn=t, guideline=BUILTIN_POLICIES[harm].guideline(t.stage))
        for t in turns
        for harm in ("dangerous", "hate")
    ]


def model_card_score(model, tokenizer, request: ScoreRequest) -> float:  # noqa: ANN001
    """The model card's code: full logits, last position, softmax over [Yes, No]."""
    inputs = tokenizer(request.prompt, return_tensors="pt")  # the tokenizer adds the one BOS
    with torch.no_grad():
        logits = model(**inputs).logits
    vocab = tokenizer.get_vocab()
    selected = logits[0, -1, [vocab["Yes"], vocab["No"]]]
    return torch.softmax(selected, dim=0)[0].item()


@pytest.fixture(scope="module")
def scorer(tiny_model_dir: Path):  # noqa: ANN201
    from guardrail import TransformersScorer

    return TransformersScorer.from_pretrained(str(tiny_model_dir), dtype="float32", batch_size=16)


def test_equals_the_model_card_computation_in_fp32(scorer) -> None:  # noqa: ANN001
    reqs = requests()
    ours = scorer.score(reqs)
    naive = [model_card_score(scorer.model, scorer.tokenizer, r) for r in reqs]
    assert max(abs(a - b) for a, b in zip(ours, naive)) < 1e-5
    # The comparison means something only if the scores differ and are not saturated.
    assert len({round(p, 4) for p in naive}) > 3 and all(1e-6 < p < 1 - 1e-6 for p in naive)


def test_item_scores_the_same_alone_and_in_a_padded_batch(scorer) -> None:  # noqa: ANN001
    reqs = requests()
    lengths = {len(r.prompt) for r in reqs}
    assert len(lengths) > 3, "the batch must mix lengths"
    batched = scorer.score(reqs)
    alone = [scorer.score([r])[0] for r in reqs]
    assert max(abs(a - b) for a, b in zip(batched, alone)) < 1e-5


@pytest.mark.parametrize("content_repeats", [1, 40])  # 40: the shared prefix outgrows the sliding window
def test_prefix_shared_scoring_equals_separate_scoring(scorer, content_repeats: int) -> None:  # noqa: ANN001
    turns = [Turn(prompt="Tell me about dogs. " * content_repeats),
             Turn(prompt="hi", response="Dogs are loyal animals. " * content_repeats)]
    reqs = [ScoreRequest(turn=t, guideline=p.guideline(t.stage)) for t in turns for p in BUILTIN_POLICIES.values()]
    scorer.share_prefix = True
    shared = scorer.score(reqs)
    separate = [scorer.score([r])[0] for r in reqs]
    assert max(abs(a - b) for a, b in zip(shared, separate)) < 1e-4
    assert len({round(p, 4) for p in shared}) > 3


@pytest.mark.parametrize("batch_size", [16, 7, 2])  # 7: two turns a pack; 2: a turn split in two
def test_turns_prefilled_together_score_as_each_turn_alone(scorer, batch_size: int) -> None:  # noqa: ANN001
    # Prefixes of very different lengths (left padding), past the sliding window (24) and not.
    turns = [Turn(prompt="Tell me about dogs. " * n) for n in (1, 3, 40)]
    turns += [Turn(prompt="hi", response="Cats sleep a lot. " * n) for n in (2, 30)]
    reqs = [ScoreRequest(turn=t, guideline=BUILTIN_POLICIES[h].guideline(t.stage))
            for t in turns for h in ("dangerous", "hate", "sexual")]
    prefills: list[int] = []
    original = scorer._p_yes_shared

    def counting(prefixes, suffixes):  # noqa: ANN001, ANN202
        prefills.append(len(prefixes))
        return original(prefixes, suffixes)

    scorer.batch_size, saved = batch_size, scorer.batch_size
    scorer._p_yes_shared = counting
    try:
        together = scorer.score(reqs)
    finally:
        scorer._p_yes_shared, scorer.batch_size = original, saved
    each_turn = [p for t in turns for p in scorer.score([r for r in reqs if r.turn == t])]
    assert max(prefills) == (1 if batch_size < 6 else batch_size // 3), "turns must share prefills"
    assert max(abs(a - b) for a, b in zip(together, each_turn)) < 1e-5
    assert len({round(p, 4) for p in together}) > 5


def test_meets_the_scorer_contract(scorer) -> None:  # noqa: ANN001
    check_scorer_contract(scorer, tolerance=1e-5)


def test_gemma2_gets_eager_attention_so_softcapping_is_kept(tiny_gemma2_dir: Path) -> None:
    from guardrail import TransformersScorer

    scorer = TransformersScorer.from_pretrained(str(tiny_gemma2_dir), dtype="float32")
    assert scorer.model.config._attn_implementation == "eager"
    assert scorer.softcap == 30.0
    with pytest.raises(ConfigError, match="softcapping"):
        TransformersScorer.from_pretrained(str(tiny_gemma2_dir), attn_implementation="sdpa")


def test_overlong_prompts_are_refused_not_truncated(tiny_model_dir: Path) -> None:
    from guardrail import TransformersScorer

    scorer = TransformersScorer.from_pretrained(str(tiny_model_dir), dtype="float32")
    scorer.max_length = 50
    with pytest.raises(ScorerError, match="over the model's 50"):
        scorer.score(requests()[:1])


class _OneWordTokenizer:
    """A tokenizer whose 'Yes' splits into two pieces."""

    unk_token_id = 3

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [10, 11] if text == "Yes" else [12]}

    def convert_tokens_to_ids(self, token: str) -> int:
        return 3 if token == "Yes" else 12


def test_answer_words_must_be_single_tokens() -> None:
    from guardrail._tokens import answer_token_ids

    with pytest.raises(ConfigError, match="single token 'Yes'"):
        answer_token_ids(_OneWordTokenizer())


def test_embedded_model_in_fp32_equals_the_model_card_computation(embedded_path: Path) -> None:
    from guardrail import TransformersScorer

    scorer = TransformersScorer.from_pretrained(str(embedded_path), dtype="float32")
    assert (scorer.yes_id, scorer.no_id) == (10784, 3771)
    reqs = requests()[:4]
    ours = scorer.score(reqs)
    naive = [model_card_score(scorer.model, scorer.tokenizer, r) for r in reqs]
    assert max(abs(a - b) for a, b in zip(ours, naive)) < 1e-5


def test_stage_of_requests_is_from_the_turn() -> None:
    assert [r.stage for r in requests()[::2]] == [Stage.INPUT, Stage.INPUT, Stage.OUTPUT, Stage.OUTPUT]


def test_the_cache_keyword_follows_the_forward_signature() -> None:
    from guardrail._transformers import cache_argument

    class New:
        def forward(self, input_ids=None, cache=None, use_cache=None): ...

    class Old:
        def forward(self, input_ids=None, past_key_values=None, use_cache=None): ...

    assert cache_argument(New()) == "cache"
    assert cache_argument(Old()) == "past_key_values"


def test_auto_dtype_is_float32_on_a_cpu_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    from guardrail import _transformers

    monkeypatch.setattr(_transformers, "native_bf16", lambda: False)
    assert _transformers._resolve_dtype("auto") is torch.float32
    assert _transformers._resolve_dtype("float32") is torch.float32
    with pytest.warns(RuntimeWarning, match="100x slower"):
        assert _transformers._resolve_dtype("bfloat16") is torch.bfloat16  # explicit: kept, warned
    monkeypatch.setattr(_transformers, "native_bf16", lambda: True)
    assert _transformers._resolve_dtype("auto") == "auto"  # the checkpoint's own (bf16 for the embedded model)
    assert _transformers._resolve_dtype("bf16") is torch.bfloat16
    with pytest.raises(ConfigError, match="dtype must be one of"):
        _transformers._resolve_dtype("int8")
