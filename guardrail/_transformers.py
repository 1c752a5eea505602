"""Score with any causal LM through transformers, the ShieldGemma way.

P(Yes) = softmax([logit(Yes), logit(No)])[0] at the last real position of the prompt. The two
logits come from the last position's hidden state and the two output-head rows only (with the
final-logit softcapping when the config has one), so full-vocabulary logits are never
materialised. Batches are right-padded and read at `attention_mask.sum(-1) - 1`, which leaves
every real token's position and attention unchanged: an item scores the same alone or in a batch.

Requests on the same turn share everything up to the guideline (preamble and conversation), so
by default that token prefix is prefilled once and the policies' suffixes run as one batch over
the cached keys and values. Several turns in one call (concurrent checks gathered by
`BatchingScorer`) are prefilled together, left-padded, and all their suffixes run as one batch.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch

from guardrail._exceptions import ConfigError, ScorerError
from guardrail._incremental import StreamCaches, StreamScorer
from guardrail._scoring import ScoreRequest
from guardrail._tokens import answer_token_ids, control_token_ids, encode_request

__all__ = ["TransformersScorer"]

# Below this many shared tokens a second forward pass costs more than it saves.
_MIN_SHARED_PREFIX = 16

_DTYPES = {
    "auto": "auto",
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX512-BF16, AMX; oneDNN says).

    Where it does not (AVX2-only CPUs), torch falls back to a reference kernel: measured here
    on an AVX2 EPYC, 0.5 GFLOP/s in bf16 against 70 in fp32.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _on_cpu(device_map: Any) -> bool:
    return device_map in (None, "cpu") or (device_map == "auto" and not torch.cuda.is_available())


def _resolve_dtype(dtype: Any, *, device_map: Any = None) -> Any:
    """A torch dtype, or "auto" (the checkpoint's). On a CPU without native bf16, "auto" is
    float32, and an explicit bf16/fp16 is kept but warned about."""
    if isinstance(dtype, torch.dtype):
        resolved: Any = dtype
    else:
        try:
            resolved = _DTYPES[str(dtype)]
        except KeyError:
            raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}") from None
    if not _on_cpu(device_map) or native_bf16():
        return resolved
    if resolved == "auto":
        return torch.float32
    if resolved in (torch.bfloat16, torch.float16):
        import warnings

        warnings.warn(f"dtype {dtype} on a CPU without native bf16/fp16 matmuls is about 100x slower than "
                      "float32; use dtype='auto' or 'float32'", RuntimeWarning, stacklevel=3)
    return resolved


def cache_argument(decoder: Any) -> str:
    """The forward's name for the KV cache: `cache` from transformers 5.24, `past_key_values`
    before (5.24 deprecates the old name with a warning; 5.40 removes it)."""
    import inspect

    parameters = inspect.signature(decoder.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _decoder(model: Any) -> Any:
    """The transformer stack under the LM head (also through a PEFT wrapper)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(base, "model", None)
    if decoder is None:
        raise ConfigError(f"{type(base).__name__} has no `.model` decoder to read hidden states from")
    return decoder


class TransformersScorer:
    """A local transformers model as a `Scorer`.

    >>> scorer = TransformersScorer.from_pretrained("google/shieldgemma-2b",   # doctest: +SKIP
    ...                                            device_map="auto", dtype="bfloat16")

    The `Yes`/`No` rows of the output head are read once, at construction: an adapter that
    changes the head or the tied embeddings must be applied before the scorer is built (PEFT
    adapters on attention or MLP layers, as `guardrail tune` makes, are read live).

    It has no `ascore`: async callers score it in a worker thread. To gather concurrent async
    checks into shared forwards, wrap it: `BatchingScorer(scorer, max_wait_ms=0)` (the
    configuration's `batching = true` does).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        batch_size: int = 8,
        max_length: int | None = None,
        share_prefix: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.share_prefix = share_prefix
        self.yes_id, self.no_id = answer_token_ids(tokenizer)
        if tokenizer.bos_token_id is None:
            raise ConfigError("the tokenizer has no BOS token; ShieldGemma prompts start with one")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.max_length = max_length or getattr(config, "max_position_embeddings", None)
        self.softcap = getattr(config, "final_logit_softcapping", None)
        self._decoder = _decoder(model)
        self._cache_arg = cache_argument(self._decoder)
        head = model.get_output_embeddings()
        if getattr(head, "bias", None) is not None:
            raise ConfigError("output heads with a bias are not supported")
        self._head_rows = head.weight[[self.yes_id, self.no_id]].detach().float()
        self._input_device = model.get_input_embeddings().weight.device
        self._control_ids = control_token_ids(tokenizer)
        self._lock = threading.Lock()
        self._stream_caches = StreamCaches()

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        dtype: Any = "auto",
        device_map: str | dict[str, Any] | None = None,
        attn_implementation: str | None = None,
        adapter: str | None = None,
        batch_size: int = 8,
        share_prefix: bool = True,
        **model_kwargs: Any,
    ) -> TransformersScorer:
        """Load a model by hub id or local path (`device_map` goes through accelerate).

        Models with attention-logit softcapping (Gemma 2, so every ShieldGemma) default to
        `eager` attention, which applies it; `sdpa` would drop it, so it is refused.
        """
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        config = AutoConfig.from_pretrained(name_or_path)
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        if getattr(text_config, "attn_logit_softcapping", None):
            if attn_implementation is None:
                attn_implementation = "eager"
            elif attn_implementation == "sdpa":
                raise ConfigError(
                    "attn_implementation='sdpa' drops Gemma 2's attention softcapping; "
                    "use 'eager' or 'flash_attention_2'"
                )
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path,
            dtype=_resolve_dtype(dtype, device_map=device_map),
            device_map=device_map,
            attn_implementation=attn_implementation,
            **model_kwargs,
        )
        if adapter is not None:
            import warnings

            from peft import PeftModel

            with warnings.catch_warnings():
                # peft 0.21 calls a transformers 5 deprecated alias; nothing for us to change.
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
                model = PeftModel.from_pretrained(model, adapter)  # type: ignore[assignment]
        return cls(model, tokenizer, batch_size=batch_size, share_prefix=share_prefix)

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        encoded = [encode_request(self.tokenizer, r, self._control_ids) for r in requests]
        for n, ids in enumerate(encoded):
            if self.max_length is not None and len(ids) > self.max_length:
                raise ScorerError(
                    f"request {n} is {len(ids)} tokens, over the model's {self.max_length}"
                )
        scores: list[float] = [0.0] * len(encoded)
        alone: list[int] = []
        shared: list[tuple[int, list[int]]] = []  # (shared prefix length, request indices)
        for group in self._groups(requests):
            prefix = _common_prefix([encoded[i] for i in group]) if len(group) > 1 else 0
            if self.share_prefix and prefix >= _MIN_SHARED_PREFIX:
                shared += [(prefix, group[i : i + self.batch_size]) for i in range(0, len(group), self.batch_size)]
            else:
                alone.extend(group)
        # Several turns (concurrent checks gathered by BatchingScorer) share one prefill: turns of
        # similar prefix length go together, up to `batch_size` suffixes per forward.
        packs: list[list[tuple[int, list[int]]]] = []
        for item in sorted(shared, key=lambda item: item[0]):
            if packs and sum(len(chunk) for _, chunk in packs[-1]) + len(item[1]) <= self.batch_size:
                packs[-1].append(item)
            else:
                packs.append([item])
        for pack in packs:
            probs = self._p_yes_shared(
                [encoded[chunk[0]][:prefix] for prefix, chunk in pack],
                [[encoded[i][prefix:] for i in chunk] for prefix, chunk in pack],
            )
            for i, p in zip([i for _, chunk in pack for i in chunk], probs):
                scores[i] = p
        # Similar lengths together waste less padding; results go back in request order.
        alone.sort(key=lambda i: len(encoded[i]))
        for start in range(0, len(alone), self.batch_size):
            chunk = alone[start : start + self.batch_size]
            for i, p in zip(chunk, self._p_yes([encoded[i] for i in chunk])):
                scores[i] = p
        return scores

    def stream_scorer(self) -> StreamScorer:
        """A scorer for the checks of one streamed answer: each check prefills only the answer
        text that is new since the last one (see `guardrail._incremental`). Close it at the end."""
        return StreamScorer(self, self._stream_caches)

    @staticmethod
    def _groups(requests: Sequence[ScoreRequest]) -> list[list[int]]:
        groups: dict[Any, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(request.turn, []).append(i)
        return list(groups.values())

    def _head(self, hidden: Any, last: Any) -> list[float]:
        final = hidden[torch.arange(hidden.shape[0], device=hidden.device), last.to(hidden.device)]
        return torch.softmax(answer_logits(final, self._head_rows, self.softcap), dim=-1)[:, 0].tolist()

    def _p_yes_shared(self, prefixes: list[list[int]], suffixes: list[list[list[int]]]) -> list[float]:
        """Prefill each prefix once, then score its suffixes over copies of its cache.

        Prefixes are left-padded so that they all end at the same cache slot, and positions
        are given explicitly, so each real token keeps its position and the tokens it attends
        to (sliding windows included); the suffixes are right-padded after them.
        """
        from transformers import DynamicCache

        prefix_ids, prefix_mask = padded(prefixes, self.pad_id, left=True)
        owners = torch.tensor([row for row, group in enumerate(suffixes) for _ in group])
        flat = [ids for group in suffixes for ids in group]
        suffix_ids, suffix_mask = padded(flat, self.pad_id)
        lengths = torch.tensor([len(p) for p in prefixes])
        device = self._input_device
        with self._lock, torch.inference_mode():
            cache = DynamicCache(config=self.model.config)
            self._decoder(
                input_ids=prefix_ids.to(device),
                attention_mask=prefix_mask.to(device),
                position_ids=(prefix_mask.cumsum(-1) - 1).clamp(min=0).to(device),
                use_cache=True,
                **{self._cache_arg: cache},
            )
            cache.batch_select_indices(owners)
            hidden = self._decoder(
                input_ids=suffix_ids.to(device),
                attention_mask=torch.cat([prefix_mask[owners], suffix_mask], dim=1).to(device),
                position_ids=(lengths[owners, None] + torch.arange(suffix_ids.shape[1])).to(device),
                use_cache=True,
                **{self._cache_arg: cache},
            ).last_hidden_state
            return self._head(hidden, torch.tensor([len(ids) - 1 for ids in flat]))

    def _p_yes(self, batch: list[list[int]]) -> list[float]:
        input_ids, mask = padded(batch, self.pad_id)
        with self._lock, torch.inference_mode():
            hidden = self._decoder(
                input_ids=input_ids.to(self._input_device),
                attention_mask=mask.to(self._input_device),
                use_cache=False,
            ).last_hidden_state
            return self._head(hidden, mask.sum(-1) - 1)


def answer_logits(final: Any, rows: Any, softcap: float | None) -> Any:
    """Next-token logits over `rows` (rows of the output embedding) from last hidden states.

    Computed in `rows`' dtype (the scorer passes the fp32 Yes/No rows, the tuner the model's own
    head) and returned in fp32, softcapped as the model's head is. The scorer's P(Yes) and the
    tuner's loss both read the answer here.
    """
    logits = (final.to(device=rows.device, dtype=rows.dtype) @ rows.T).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def padded(batch: list[list[int]], pad_id: int, *, left: bool = False) -> tuple[Any, Any]:
    """Ids padded to one width (on the right, or on the left), and their attention mask."""
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        span = slice(width - len(ids), width) if left else slice(0, len(ids))
        input_ids[row, span] = torch.tensor(ids)
        mask[row, span] = 1
    return input_ids, mask


def _common_prefix(sequences: list[list[int]]) -> int:
    """Tokens all sequences share at the start, leaving each at least one token of its own."""
    shortest = min(len(s) for s in sequences)
    n = 0
    while n < shortest - 1 and all(s[n] == sequences[0][n] for s in sequences):
        n += 1
    return n
