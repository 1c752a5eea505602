"""Score through a served model: an OpenAI-compatible completions server such as vLLM.

    vllm serve google/shieldgemma-2b --max-logprobs 20

The prompt is tokenized here, with the same injection-safe encoding as the local scorer
(`encode_request`: control tokens typed in content stay plain text), and sent as token ids, so
the server never re-tokenizes text an attacker wrote. One request carries a whole batch
(`prompt` is a list of token-id lists) and asks for one token with log-probabilities:

- `logprob_token_ids=[Yes, No]` (vLLM's explicit label set): both answers' log-probabilities,
  whatever their rank;
- `allowed_token_ids=[Yes, No]` with `temperature=0`: the sampled token, which vLLM always
  reports, is the likelier of the two;
- `logprobs=top_logprobs`: the natural top-k, for servers without `logprob_token_ids`;
- neutral penalties, so a server's default `repetition_penalty` can't touch the prompt's own
  "Yes"/"No" when the server reports processed log-probabilities;
- `return_tokens_as_token_ids`: answers are keyed `token_id:N`, never by ambiguous text.

P(Yes) = 1 / (1 + exp(lp(No) - lp(Yes))). Any normalisation the server applies (log-softmax over
the vocabulary, over the allowed pair, or raw logits) shifts both values by the same constant,
so the difference is logit(Yes) - logit(No) and the result is exactly the two-way softmax the
local scorer computes. A response without both values is a `ScorerError`, never a guess.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import tenacity

from guardrail._exceptions import ConfigError, ScorerError
from guardrail._scoring import ScoreRequest

__all__ = ["RemoteScorer"]

_NEUTRAL = {
    "temperature": 0.0,
    "top_p": 1.0,
    "repetition_penalty": 1.0,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
}


@dataclass(frozen=True, kw_only=True)
class _Vocab:
    """The served model's tokenizer and what scoring needs from it."""

    tokenizer: Any
    controls: frozenset[int]
    answers: list[int]  # [Yes, No]
    yes_keys: tuple[str, ...]  # how a response may name each answer: `token_id:N`, then its text
    no_keys: tuple[str, ...]


class _Transient(Exception):
    """A failure worth another attempt: 5xx, 429, or the transport (connect, timeout, drop)."""


def _completions_url(base_url: str) -> str:
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"base_url must be an http(s) URL, got {base_url!r}")
    base = base_url.rstrip("/")
    return f"{base}/completions" if base.endswith("/v1") else f"{base}/v1/completions"


def _number(name: str, value: object, *, minimum: float, integer: bool = False) -> Any:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not minimum <= value < math.inf:
        raise ConfigError(f"{name} must be {'an integer' if integer else 'a number'} >= {minimum}, got {value!r}")
    return value


def p_yes(yes: float, no: float) -> float:
    """Softmax over two log-probabilities (or logits), computed without overflow."""
    d = yes - no
    if d >= 0:
        return 1.0 / (1.0 + math.exp(-d))
    e = math.exp(d)
    return e / (1.0 + e)


def _logprob(top: Mapping[str, Any], keys: tuple[str, ...], n: int, word: str) -> float:
    for key in keys:
        if key in top:
            value = top[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ScorerError(f"choice {n}: log-probability of {word!r} is {value!r}, not a finite number")
            return float(value)
    raise ScorerError(
        f"choice {n}: the response has no log-probability for {word!r} (got {sorted(top)[:8]}); "
        "the server must honour logprob_token_ids (recent vLLM), or report processed "
        "log-probabilities (vllm serve --logprobs-mode processed_logprobs), or a larger top_logprobs"
    )


def parse_scores(payload: Any, expected: int, yes_keys: tuple[str, ...], no_keys: tuple[str, ...]) -> list[float]:
    """P(Yes) per prompt from a completions response, in prompt order (pure; raises `ScorerError`)."""
    if not isinstance(payload, dict):
        raise ScorerError(f"the response is a JSON {type(payload).__name__}, not an object")
    choices = payload.get("choices")
    if not isinstance(choices, list):
        error = payload.get("error")
        raise ScorerError(f"the response has no choices{f': {error}' if error else ''}")
    if len(choices) != expected:
        raise ScorerError(f"the response has {len(choices)} choices for {expected} prompts")
    scores: list[float | None] = [None] * expected
    for n, choice in enumerate(choices):
        index = choice.get("index", n) if isinstance(choice, dict) else None
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < expected or scores[index] is not None:
            raise ScorerError(f"choice {n} has a missing, repeated or out-of-range index {index!r}")
        logprobs = choice.get("logprobs")
        tops = logprobs.get("top_logprobs") if isinstance(logprobs, dict) else None
        if not isinstance(tops, list) or not tops or not isinstance(tops[0], dict):
            raise ScorerError(f"choice {n} has no top_logprobs for the first generated token")
        top = tops[0]
        scores[index] = p_yes(_logprob(top, yes_keys, n, "Yes"), _logprob(top, no_keys, n, "No"))
    return [s for s in scores if s is not None]


def _payload(response: httpx.Response) -> Any:
    status = response.status_code
    if status >= 500 or status == 429:
        raise _Transient(f"the server answered {status}")
    if status >= 400:
        raise ScorerError(f"the server answered {status}: {response.text[:300]}")
    try:
        return response.json()
    except ValueError as exc:
        raise ScorerError(f"the response is not valid JSON ({exc})") from None


async def _held(client: httpx.AsyncClient) -> AsyncGenerator[httpx.AsyncClient, None]:
    """Keeps `client` open for its event loop's life: loops close it when they finalize async generators."""
    try:
        yield client
    finally:
        await client.aclose()


class RemoteScorer:
    """A `Scorer` backed by an OpenAI-compatible completions server (vLLM and friends).

    >>> scorer = RemoteScorer("http://localhost:8000", tokenizer="google/shieldgemma-2b",
    ...                       model="google/shieldgemma-2b", timeout=2.0, retries=2)
    >>> guard = Guard(["dangerous", "hate"], scorer=scorer)               # doctest: +SKIP

    `tokenizer` is the served model's tokenizer, or a local path / hub id to load it from on
    first use (transformers; nothing loads at construction). `base_url` may end in `/v1`.
    `timeout` bounds each HTTP operation (connect, send, each read); `retries` extra attempts
    follow 5xx, 429, connection failures, dropped connections and timeouts, with full-jitter
    exponential `backoff`; any other failure (4xx, malformed JSON, missing log-probabilities)
    is a `ScorerError` at once. Batches go `batch_size` prompts per request (concurrently on the
    async path). Sync calls share one pooled `httpx.Client`; each event loop gets its own
    pooled `httpx.AsyncClient`, closed when that loop shuts down. `close()`/`aclose()`, or use
    it as a (async) context manager. `transport`/`async_transport` are for tests.
    """

    def __init__(
        self,
        base_url: str,
        *,
        tokenizer: Any,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.1,
        batch_size: int = 64,
        top_logprobs: int = 20,
        max_connections: int = 32,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = _completions_url(base_url)
        if tokenizer is None or (isinstance(tokenizer, str) and not tokenizer):
            raise ConfigError("tokenizer must be the served model's tokenizer, or a path or hub id to load it from")
        if model is not None and (not isinstance(model, str) or not model):
            raise ConfigError(f"model must be a non-empty string or None, got {model!r}")
        self.model = model
        self.timeout = float(_number("timeout", timeout, minimum=1e-3))
        self.retries = _number("retries", retries, minimum=0, integer=True)
        self.backoff = float(_number("backoff", backoff, minimum=0))
        self.batch_size = _number("batch_size", batch_size, minimum=1, integer=True)
        self.top_logprobs = _number("top_logprobs", top_logprobs, minimum=1, integer=True)
        self._limits = httpx.Limits(
            max_connections=_number("max_connections", max_connections, minimum=1, integer=True),
            max_keepalive_connections=max_connections,
        )
        self._headers = {**(dict(headers) if headers else {}), **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
        self._transport = transport
        self._async_transport = async_transport
        self._tokenizer_source = tokenizer
        self._vocab: _Vocab | None = None
        self._client: httpx.Client | None = None
        self._async: dict[asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, AsyncGenerator[Any, None]]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RemoteScorer({self.url!r}, model={self.model!r})"

    # --- pure parts: what to send and how to read the answer ------------------------------------
    def _loaded(self) -> _Vocab:
        with self._lock:
            if self._vocab is None:
                from guardrail._tokens import answer_token_ids, control_token_ids

                tokenizer = self._tokenizer_source
                if isinstance(tokenizer, (str, os.PathLike)):
                    from transformers import AutoTokenizer

                    try:
                        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
                    except (OSError, ValueError) as exc:
                        raise ConfigError(f"could not load the tokenizer {str(self._tokenizer_source)!r}: {exc}") from exc
                if tokenizer.bos_token_id is None:
                    raise ConfigError("the tokenizer has no BOS token; ShieldGemma prompts start with one")
                yes, no = answer_token_ids(tokenizer)
                self._vocab = _Vocab(
                    tokenizer=tokenizer,
                    controls=control_token_ids(tokenizer),
                    answers=[yes, no],
                    yes_keys=(f"token_id:{yes}", tokenizer.decode([yes])),
                    no_keys=(f"token_id:{no}", tokenizer.decode([no])),
                )
            return self._vocab

    def load(self) -> None:
        """Load the tokenizer now (the guard calls this outside its timeout); idempotent."""
        self._loaded()

    def _bodies(self, requests: Sequence[ScoreRequest]) -> list[dict[str, Any]]:
        from guardrail._tokens import encode_request

        vocab = self._loaded()
        prompts = [encode_request(vocab.tokenizer, r, vocab.controls) for r in requests]
        common = {
            **({"model": self.model} if self.model is not None else {}),
            "max_tokens": 1,
            "n": 1,
            **_NEUTRAL,
            "logprobs": self.top_logprobs,
            "logprob_token_ids": vocab.answers,
            "allowed_token_ids": vocab.answers,
            "return_tokens_as_token_ids": True,
            "add_special_tokens": False,  # the ids already start with the one BOS
        }
        return [{**common, "prompt": prompts[i : i + self.batch_size]} for i in range(0, len(prompts), self.batch_size)]

    def _read(self, response: httpx.Response, body: dict[str, Any]) -> list[float]:
        vocab = self._loaded()
        return parse_scores(_payload(response), len(body["prompt"]), vocab.yes_keys, vocab.no_keys)

    def _retrying(self, kind: type[tenacity.BaseRetrying]) -> tenacity.BaseRetrying:
        wait = tenacity.wait_random_exponential(multiplier=self.backoff, max=2.0) if self.backoff else tenacity.wait_none()
        return kind(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=wait,
            retry=tenacity.retry_if_exception_type((_Transient, httpx.TransportError)),
            reraise=True,
        )

    def _failed(self, exc: BaseException) -> ScorerError:
        if isinstance(exc, ScorerError):
            return ScorerError(f"{self!r}: {exc}")
        attempts = f" after {self.retries + 1} attempts" if isinstance(exc, (_Transient, httpx.TransportError)) else ""
        return ScorerError(f"{self!r} failed{attempts}: {type(exc).__name__}: {exc}")

    # --- sync -------------------------------------------------------------------------------------
    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=self.timeout, limits=self._limits, headers=self._headers, transport=self._transport
                )
            return self._client

    def _post(self, body: dict[str, Any]) -> list[float]:
        return self._read(self._sync_client().post(self.url, json=body), body)

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        if not requests:
            return []
        try:
            return [p for body in self._bodies(requests) for p in self._retrying(tenacity.Retrying)(self._post, body)]
        except ConfigError:
            raise
        except Exception as exc:
            raise self._failed(exc) from exc

    # --- async ------------------------------------------------------------------------------------
    async def _async_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            for old in [other for other in self._async if other.is_closed()]:
                del self._async[old]
            entry = self._async.get(loop)
        if entry is None:
            client = httpx.AsyncClient(
                timeout=self.timeout, limits=self._limits, headers=self._headers, transport=self._async_transport
            )
            holder = _held(client)
            await anext(holder)  # the loop now finalizes `holder`, closing the client, at shutdown
            with self._lock:
                entry = self._async.setdefault(loop, (client, holder))
            if entry[0] is not client:
                await holder.aclose()
        return entry[0]

    async def _apost(self, body: dict[str, Any]) -> list[float]:
        client = await self._async_client()
        return self._read(await client.post(self.url, json=body), body)

    async def _aone(self, body: dict[str, Any]) -> list[float]:
        return await self._retrying(tenacity.AsyncRetrying)(self._apost, body)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[float]:
        if not requests:
            return []
        try:
            bodies = await asyncio.to_thread(self._bodies, requests)  # a first use loads the tokenizer
            batches = await asyncio.gather(*(self._aone(body) for body in bodies))
        except ConfigError:
            raise
        except Exception as exc:
            raise self._failed(exc) from exc
        return [p for batch in batches for p in batch]

    # --- lifetime ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the sync client. Async clients close with their loops, or with `aclose()`."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close this event loop's async client and the sync client."""
        with self._lock:
            entry = self._async.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[1].aclose()  # type: ignore[attr-defined]
        self.close()

    def __enter__(self) -> RemoteScorer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> RemoteScorer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
