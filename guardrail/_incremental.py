"""Incremental scoring of a streamed answer: keep the KV cache of what was already read.

A streamed answer is checked every few hundred characters. Each check's prompt is the previous
one's with more answer text: the preamble, the user's turn and the answer so far are a prefix
that only grows, and only the policies' suffixes (guideline and question) follow it. A
`StreamScorer` (one per stream, from `TransformersScorer.stream_scorer()`) keeps the cache of that
prefix and, per check, prefills only the new tokens, then runs every policy suffix over a copy of
the cache in one batch. Scores equal a from-scratch check (the same positions, the same
attention, sliding windows included).

The last `hold` tokens of the prefix are never committed to the cache: they are prefilled with
the suffixes at every check, so text that retokenizes differently once more of it arrives (a
word cut mid-way) is read fresh. A check whose prefix does not extend the committed tokens (a
retokenized earlier seam, a new window of a long answer, another turn) starts from scratch.

Caches are per stream and never shared: the scorer keeps at most `max_streams` of them, and at
most `max_bytes` in all, evicting the least recently used (an evicted stream recomputes on its
next check). `close()` frees a stream's cache; the moderator calls it when the stream ends.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from guardrail._exceptions import ScorerError
from guardrail._scoring import ScoreRequest
from guardrail._tokens import encode_request

if TYPE_CHECKING:
    from guardrail._transformers import TransformersScorer

__all__ = ["LazyStreamScorer", "StreamCaches", "StreamScorer"]


class StreamCaches:
    """The scorer-wide bound on stream caches: count and bytes, least recently used first out.

    Streams are held weakly: an abandoned stream's cache goes with it.
    """

    def __init__(self, *, max_streams: int = 64, max_bytes: int = 1 << 30) -> None:
        self.max_streams = max_streams
        self.max_bytes = max_bytes
        self._streams: OrderedDict[int, weakref.ref[StreamScorer]] = OrderedDict()
        self._lock = threading.Lock()

    def touch(self, stream: StreamScorer) -> None:
        """`stream` was just used; evict others (never `stream` itself) to stay within bounds."""
        with self._lock:
            self._streams[id(stream)] = weakref.ref(stream)
            self._streams.move_to_end(id(stream))
            live = self._live()
            while len(live) > 1 and (len(live) > self.max_streams or sum(s.nbytes for s in live) > self.max_bytes):
                oldest = live.pop(0)
                self._streams.pop(id(oldest), None)
                oldest.reset()

    def forget(self, stream: StreamScorer) -> None:
        with self._lock:
            self._streams.pop(id(stream), None)

    def _live(self) -> list[StreamScorer]:
        for key, ref in list(self._streams.items()):
            if ref() is None:
                del self._streams[key]
        return [s for ref in self._streams.values() if (s := ref()) is not None]

    def bytes(self) -> int:
        with self._lock:
            return sum(s.nbytes for s in self._live())

    def __len__(self) -> int:
        with self._lock:
            return len(self._live())


class StreamScorer:
    """A `Scorer` for the checks of one streamed answer (see the module docstring).

    >>> stream = scorer.stream_scorer()           # doctest: +SKIP
    >>> stream.score(requests_for_the_answer_so_far)            # doctest: +SKIP
    >>> stream.close()                            # doctest: +SKIP

    Calls that are not one turn's policies (several turns, windows of a long answer) are scored
    from scratch by the owner and leave the cache as it was.
    """

    def __init__(self, owner: TransformersScorer, caches: StreamCaches, *, hold: int = 16) -> None:
        self.owner = owner
        self.hold = hold  # answer tokens before its end that are read fresh each check
        self._caches = caches
        self._ids: list[int] = []  # the committed prefix tokens, whose keys and values are cached
        self._cache: Any = None
        self.prefilled = 0  # prefix tokens forwarded into the cache, all checks together

    @property
    def nbytes(self) -> int:
        if self._cache is None:
            return 0
        return sum(t.numel() * t.element_size() for layer in self._cache.layers for t in (layer.keys, layer.values) if t is not None)

    def reset(self) -> None:
        self._ids, self._cache = [], None

    def close(self) -> None:
        """Free this stream's cache."""
        self.reset()
        self._caches.forget(self)

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        if not requests:
            return []
        owner = self.owner
        if len(owner._groups(requests)) != 1 or len(requests) > owner.batch_size or requests[0].turn.response is None:
            return owner.score(requests)
        encoded = [encode_request(owner.tokenizer, r, owner._control_ids) for r in requests]
        for n, ids in enumerate(encoded):
            if owner.max_length is not None and len(ids) > owner.max_length:
                raise ScorerError(f"request {n} is {len(ids)} tokens, over the model's {owner.max_length}")
        prefix = _shared_prefix(owner, requests[0], encoded)
        stable = min(prefix, _answer_end(owner, requests[0], encoded[0])) - self.hold
        return self._scores(encoded[0][:prefix], [ids[prefix:] for ids in encoded], stable)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[float]:
        return await asyncio.to_thread(self.score, requests)

    def _scores(self, prefix: list[int], suffixes: list[list[int]], stable: int) -> list[float]:
        import torch
        from transformers import DynamicCache

        from guardrail._transformers import padded

        owner = self.owner
        device = owner._input_device
        with owner._lock, torch.inference_mode():
            if prefix[: len(self._ids)] != self._ids:
                self.reset()  # the seam retokenized, or another turn: start again
            commit = max(len(self._ids), stable)
            if commit > len(self._ids):
                if self._cache is None:
                    self._cache = DynamicCache(config=owner.model.config)
                new = prefix[len(self._ids) : commit]
                owner._decoder(
                    input_ids=torch.tensor([new], device=device),
                    attention_mask=torch.ones((1, commit), dtype=torch.long, device=device),
                    position_ids=torch.arange(len(self._ids), commit, device=device)[None],
                    use_cache=True,
                    **{owner._cache_arg: self._cache},
                )
                self.prefilled += len(new)
                self._ids = prefix[:commit]
            done = len(self._ids)
            work = copy.deepcopy(self._cache) if self._cache is not None else DynamicCache(config=owner.model.config)
            rows = [prefix[done:] + suffix for suffix in suffixes]
            if done:
                work.batch_repeat_interleave(len(rows))
            ids, mask = padded(rows, owner.pad_id)
            hidden = owner._decoder(
                input_ids=ids.to(device),
                attention_mask=torch.cat([torch.ones((len(rows), done), dtype=torch.long), mask], dim=1).to(device),
                position_ids=(done + torch.arange(ids.shape[1]))[None].expand(len(rows), -1).to(device),
                use_cache=True,
                **{owner._cache_arg: work},
            ).last_hidden_state
            scores = owner._head(hidden, torch.tensor([len(row) - 1 for row in rows]))
        self._caches.touch(self)
        return scores


class LazyStreamScorer:
    """A stream scorer made on first use (for scorers that load their model lazily)."""

    def __init__(self, make: Callable[[], StreamScorer]) -> None:
        self._make = make
        self._stream: StreamScorer | None = None

    def _get(self) -> StreamScorer:
        if self._stream is None:
            self._stream = self._make()
        return self._stream

    def load(self) -> None:
        """Make the stream scorer (loading the model) outside a check's timeout; see `Guard`."""
        self._get()

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        return self._get().score(requests)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[float]:
        return await asyncio.to_thread(self.score, requests)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


def _answer_end(owner: TransformersScorer, request: ScoreRequest, encoded: list[int]) -> int:
    """Tokens that come before the end of the answer text (the template follows it, and more
    answer text will come before the template next time)."""
    from guardrail._messages import Turn
    from guardrail._transformers import _common_prefix

    longer = Turn(prompt=request.turn.prompt, response=f"{request.turn.response}0")
    twin = ScoreRequest(turn=longer, guideline=request.guideline, policy=request.policy)
    return _common_prefix([encoded, encode_request(owner.tokenizer, twin, owner._control_ids)])


def _shared_prefix(owner: TransformersScorer, request: ScoreRequest, encoded: list[list[int]]) -> int:
    """Tokens before the first policy's guideline: what every check of this answer starts with."""
    from guardrail._transformers import _common_prefix

    if len(encoded) > 1:
        return _common_prefix(encoded)
    # One policy: compare with the same turn under another guideline to find where it starts.
    twin = ScoreRequest(turn=request.turn, guideline="1" if request.guideline.startswith("0") else "0", policy=request.policy)
    other = encode_request(owner.tokenizer, twin, owner._control_ids)
    return _common_prefix([encoded[0], other])
