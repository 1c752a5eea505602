"""One TOML file configures a guard: the model, then each policy in order.

```toml
[model]
name = "embedded"            # or "google/shieldgemma-2b", or a local directory
dtype = "auto"               # auto | float32 | bfloat16 | float16; auto is float32 on CPUs
                             # without native bf16 (AVX2-only), else the checkpoint's (bf16)
device_map = "auto"          # optional, passed to accelerate
attn_implementation = "eager"  # optional; Gemma 2 defaults to eager (keeps softcapping)
adapter = "path/to/lora"     # optional PEFT adapter; for "embedded" the shipped one by default,
                             # "none" for the bare base model
batch_size = 8                # suffixes per forward (several policies, several turns)
batching = true              # concurrent async checks share forwards (local models)
threads = 2                  # CPU threads for torch (optional; default: one per core)
# url = "http://localhost:8000"   # score through a served model (vLLM, OpenAI-compatible
# tokenizer = "google/shieldgemma-2b"  # completions); prompts are tokenized here, with this
# timeout = 10.0                  # tokenizer (default: the model name), and sent as token ids
# retries = 2

[guard]
refusal = "I can't help with that."
timeout = 2.0                # seconds per scorer call (optional)
budget = 5.0                 # seconds for a whole check, retries included (optional)
retries = 1                  # extra attempts after a scorer error
window = 8000                # long content is scored in windows of this many characters ...
overlap = 1000               # ... overlapping by this many; max over windows
prompt_tail = 2000           # output checks see the last this-many characters of the prompt

[policies.hate]              # a built-in: dangerous, harassment, hate, sexual, violence, obscenity
threshold = 0.4
action = "block"             # block | rewrite | flag
stages = ["input", "output"]
on_error = "block"           # block | allow | raise: when no score can be had

[policies.spam]              # a custom policy: a description, phrased for both stages ...
title = "Spam"
description = "advertises products or services."
action = "flag"

[policies.pii]               # ... or the guideline texts themselves
input_guideline = '"No PII": The prompt shall not contain ...'
```

Precedence is flags > environment (`GUARDRAIL_MODEL`, `GUARDRAIL_DTYPE`, `GUARDRAIL_DEVICE_MAP`,
`GUARDRAIL_MODEL_URL`, `GUARDRAIL_THREADS`; `GUARDRAIL_API_KEY` for a served model) > file > defaults. Every
problem is a `ConfigError` naming the file and the key: an unreadable or non-UTF-8 file, a
policy that is neither a built-in nor given a guideline, an empty `stages`, a model that can't
be found (when `build_guard` builds it).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardrail._batching import BatchingScorer
from guardrail._exceptions import ConfigError
from guardrail._guard import validate_retries, validate_seconds
from guardrail._policies import (
    BUILTIN_POLICIES,
    DEFAULT_POLICIES,
    Policy,
    Stage,
    builtin_policy,
    format_guideline,
    resolve_policies,
)
from guardrail._verdict import DEFAULT_REFUSAL
from guardrail._windows import Windows

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

if TYPE_CHECKING:
    from guardrail._guard import Guard
    from guardrail._scoring import Scorer

__all__ = ["Config", "ModelConfig", "load_config", "load_serve_table"]

_ENV = {
    "GUARDRAIL_MODEL": "name",
    "GUARDRAIL_DTYPE": "dtype",
    "GUARDRAIL_DEVICE_MAP": "device_map",
    "GUARDRAIL_MODEL_URL": "url",
}


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Which model scores, and how it is loaded."""

    name: str = "embedded"
    dtype: str = "auto"
    device_map: str | None = None
    attn_implementation: str | None = None
    adapter: str | None = None
    batch_size: int = 8
    batching: bool = True
    url: str | None = None
    tokenizer: str | None = None
    timeout: float = 10.0
    retries: int = 2
    threads: int | None = None  # CPU threads for torch (process-wide); None: torch's default

    def build_scorer(self) -> Scorer:
        """The scorer this describes. Loading happens here or, for the embedded model, lazily.

        A model that can't be found or loaded is a `ConfigError` naming `model.name`.
        """
        if self.url is not None:
            return self._remote(self.url)
        if self.threads is not None:
            set_threads(self.threads)
        scorer = self._local()
        if not self.batching:
            return scorer
        return BatchingScorer(scorer, max_batch=4 * self.batch_size, max_wait_ms=0)

    @property
    def thresholds(self) -> dict[str, float]:
        """The calibrated thresholds of the model this describes (the embedded one has some)."""
        if self.url is not None or self.name != "embedded":
            return {}
        return self._embedded().thresholds

    def _embedded(self) -> Any:
        from guardrail._embedded import EmbeddedScorer

        adapter = {None: "default", "none": None}.get(self.adapter, self.adapter)
        return EmbeddedScorer(dtype=self.dtype, device_map=self.device_map, adapter=adapter)

    def _local(self) -> Scorer:
        if self.name == "embedded":
            if self.attn_implementation:
                raise ConfigError("model.attn_implementation needs a model.name other than 'embedded'")
            return self._embedded()  # loads lazily
        from guardrail._transformers import TransformersScorer

        try:
            return TransformersScorer.from_pretrained(
                self.name,
                dtype=self.dtype,
                device_map=self.device_map,
                attn_implementation=self.attn_implementation,
                adapter=self.adapter,
                batch_size=self.batch_size,
            )
        except ConfigError:
            raise
        except (OSError, ValueError) as exc:  # a missing directory, an unknown hub id offline
            adapter = f" with model.adapter {self.adapter!r}" if self.adapter else ""
            raise ConfigError(f"model.name: can't load {self.name!r}{adapter}: {exc}") from exc


    def _remote(self, url: str) -> Scorer:
        from guardrail._remote import RemoteScorer

        local_only = [k for k in ("device_map", "adapter", "attn_implementation") if getattr(self, k)]
        if local_only:
            raise ConfigError(f"model.{local_only[0]} applies to a local model, not to model.url")
        if self.tokenizer:
            tokenizer = self.tokenizer
        elif self.name == "embedded":
            from guardrail._embedded import embedded_model_path

            tokenizer = str(embedded_model_path())
        else:
            tokenizer = self.name
        return RemoteScorer(
            url,
            tokenizer=tokenizer,
            model=None if self.name == "embedded" else self.name,
            api_key=os.environ.get("GUARDRAIL_API_KEY"),
            timeout=self.timeout,
            retries=self.retries,
            batch_size=self.batch_size,
        )


@dataclass(frozen=True, kw_only=True)
class Config:
    """A loaded configuration: build a guard from it with `build_guard()`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    policies: tuple[Policy, ...] = field(default_factory=lambda: resolve_policies(None))
    refusal: str = DEFAULT_REFUSAL
    guard: Mapping[str, Any] = field(default_factory=dict)  # Guard options: timeout, budget, retries
    windows: Windows | None = field(default_factory=Windows)
    source: Path | None = None
    default_thresholds: Mapping[str, float] = field(default_factory=dict)  # for built-ins, per model

    def build_guard(self, *, scorer: Scorer | None = None) -> Guard:
        from guardrail._guard import Guard

        if scorer is None:
            try:
                scorer = self.model.build_scorer()
            except ConfigError as exc:
                raise ConfigError(f"{self.source or 'config'}: {exc}") from exc
        return Guard(self.policies, scorer=scorer, refusal=self.refusal, windows=self.windows, **self.guard)

    def select(self, names: list[str]) -> Config:
        """Only the named policies: configured ones first, else the built-ins of that name."""
        configured = {p.name: p for p in self.policies}
        chosen = tuple(configured.get(n) or _builtin(n, f"policy {n!r}", self.default_thresholds) for n in names)
        return dataclasses.replace(self, policies=resolve_policies(chosen))


def set_threads(threads: int) -> None:
    """Use `threads` CPU threads for torch's forwards (process-wide).

    torch defaults to one thread per core; on a machine shared with other work that
    oversubscribes the cores and forwards slow down many times over.
    """
    import torch

    torch.set_num_threads(threads)


def _builtin(name: str, where: str, thresholds: Mapping[str, float]) -> Policy:
    """`builtin_policy` with the model's thresholds; an unknown name's error says where."""
    try:
        return builtin_policy(name, thresholds=thresholds)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _require_table(data: Any, where: str) -> dict[str, Any]:
    """`data` as a dict when it is a TOML table; `ConfigError` naming `where` otherwise."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: must be a table, got {type(data).__name__}")
    return dict(data)


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _model(data: Mapping[str, Any], where: str) -> ModelConfig:
    fields = {f.name: f.type for f in dataclasses.fields(ModelConfig)}
    _check_keys(data, set(fields), where)
    for key, value in data.items():
        types: dict[str, type | tuple[type, ...]] = {
            "batch_size": int, "retries": int, "timeout": (int, float), "batching": bool, "threads": int
        }
        wanted = types.get(key, str)
        if not isinstance(value, wanted) or (isinstance(value, bool) and wanted is not bool):
            name = "number" if isinstance(wanted, tuple) else wanted.__name__
            raise ConfigError(f"{where}.{key}: must be a {name}, got {value!r}")
    if data.get("timeout", 1) <= 0 or data.get("retries", 0) < 0:
        raise ConfigError(f"{where}: timeout must be positive and retries non-negative")
    if data.get("batch_size", 1) < 1:
        raise ConfigError(f"{where}.batch_size: must be at least 1")
    if data.get("threads", 1) < 1:
        raise ConfigError(f"{where}.threads: must be at least 1")
    return ModelConfig(**data)


_POLICY_KEYS = {"threshold", "output_threshold", "action", "stages", "on_error", "title", "description", "input_guideline", "output_guideline"}


def _policy(name: str, data: Mapping[str, Any], where: str, thresholds: Mapping[str, float]) -> Policy:
    _check_keys(data, _POLICY_KEYS, where)
    changes = {k: data[k] for k in ("threshold", "output_threshold", "action", "stages", "on_error") if k in data}
    if "stages" in changes and (
        not isinstance(changes["stages"], list) or not all(isinstance(s, str) for s in changes["stages"])
        or not changes["stages"]
    ):
        raise ConfigError(f"{where}.stages: must be a non-empty list of 'input'/'output', got {changes['stages']!r}")
    texts = {k: data[k] for k in ("input_guideline", "output_guideline") if k in data}
    if "description" in data:
        if texts:
            raise ConfigError(f"{where}: give either description or input_guideline/output_guideline")
        title = data.get("title", name.replace("_", " ").title())
        texts = {f"{s.value}_guideline": format_guideline(title, data["description"], s) for s in Stage}
    elif "title" in data:
        raise ConfigError(f"{where}.title: only used together with description")
    elif not texts and name not in BUILTIN_POLICIES:
        raise ConfigError(
            f"{where}: {name!r} is not a built-in policy ({', '.join(BUILTIN_POLICIES)}), so it needs "
            "a guideline: description (with an optional title), or input_guideline/output_guideline"
        )
    try:
        if texts:
            return Policy(name=name, **texts, **changes)
        if "threshold" in changes:  # the configured threshold holds in both stages unless told otherwise
            changes.setdefault("output_threshold", None)
        return dataclasses.replace(_builtin(name, where, thresholds), **changes)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_config(path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read a TOML configuration (or only the defaults when `path` is None), then the environment."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = None
    if path is not None:
        source = Path(path)
        try:
            data = tomllib.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{source}: no such configuration file") from None
        except IsADirectoryError:
            raise ConfigError(f"{source}: is a directory, not a configuration file") from None
        except OSError as exc:
            raise ConfigError(f"{source}: can't read the configuration file: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    where = str(source or "config")
    _check_keys(data, {"model", "guard", "policies", "serve"}, where)  # serve: load_serve_table
    model_data = _require_table(data.get("model", {}), f"{where}: model")
    for variable, key in _ENV.items():
        if environ.get(variable):
            model_data[key] = environ[variable]
    if environ.get("GUARDRAIL_THREADS"):
        try:
            model_data["threads"] = int(environ["GUARDRAIL_THREADS"])
        except ValueError:
            raise ConfigError(f"GUARDRAIL_THREADS must be an integer, got {environ['GUARDRAIL_THREADS']!r}") from None
    if source is not None and isinstance(model_data.get("adapter"), str) and model_data["adapter"] != "none":
        adapter = Path(model_data["adapter"]).expanduser()
        if not adapter.is_absolute():  # relative to the configuration file, not the cwd
            model_data["adapter"] = str(source.parent / adapter)
    model = _model(model_data, f"{where}: model")
    guard = _require_table(data.get("guard", {}), f"{where}: guard")
    _check_keys(guard, {"refusal", "timeout", "budget", "retries", "window", "overlap", "prompt_tail"}, f"{where}: guard")
    refusal = guard.pop("refusal", DEFAULT_REFUSAL)
    if not isinstance(refusal, str) or not refusal:
        raise ConfigError(f"{where}: guard.refusal: must be a non-empty string")
    # The Guard's own checks, run here so the error names the file and the key.
    for key in ("timeout", "budget"):
        if key in guard:
            validate_seconds(f"{where}: guard.{key}:", guard[key])
    if "retries" in guard:
        validate_retries(f"{where}: guard.retries:", guard["retries"])
    try:
        windows = Windows(size=guard.pop("window", Windows.size), overlap=guard.pop("overlap", Windows.overlap),
                          prompt_tail=guard.pop("prompt_tail", Windows.prompt_tail))
    except ConfigError as exc:
        raise ConfigError(f"{where}: guard: {exc}") from None
    thresholds = model.thresholds  # the model's calibrated thresholds, for built-ins
    policies_data = _require_table(data.get("policies", {}), f"{where}: policies")
    policies = tuple(
        _policy(name, _require_table(body, f"{where}: policies.{name}"), f"{where}: policies.{name}", thresholds)
        for name, body in policies_data.items()
    )
    if not policies:
        policies = tuple(_builtin(n, where, thresholds) for n in DEFAULT_POLICIES)
    return Config(
        model=model,
        policies=resolve_policies(policies),
        refusal=refusal,
        guard=guard,
        windows=windows,
        source=source,
        default_thresholds=thresholds,
    )


def load_serve_table(path: str | os.PathLike[str] | None, *, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The `[serve]` table for `guardrail serve` (empty without a file or a table), then the
    environment: `GUARDRAIL_SERVE_API_KEYS` (comma-separated) replaces `api_keys`, and
    `GUARDRAIL_UPSTREAM_API_KEY` replaces `upstream_api_key`.

    Only the table's shape is checked here; `guardrail.serve.ServeSettings.from_table`
    validates the keys, so this module needs no web dependency.
    """
    environ = os.environ if environ is None else environ
    table: dict[str, Any] = {}
    if path is not None:
        source = Path(path)
        try:
            data = tomllib.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{source}: no such configuration file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        table = _require_table(data.get("serve", {}), f"{source}: serve")
    keys = environ.get("GUARDRAIL_SERVE_API_KEYS")
    if keys:
        table["api_keys"] = [k.strip() for k in keys.split(",") if k.strip()]
    if environ.get("GUARDRAIL_UPSTREAM_API_KEY"):
        table["upstream_api_key"] = environ["GUARDRAIL_UPSTREAM_API_KEY"]
    return table
