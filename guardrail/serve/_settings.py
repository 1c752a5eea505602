"""How the service runs: address, keys, limits. One frozen value, validated at construction.

>>> ServeSettings(api_keys=("s3cret",), host="0.0.0.0", max_in_flight=32).max_in_flight
32

From a configuration file's `[serve]` table (see `guardrail._config.load_serve_table`):

```toml
[serve]
host = "127.0.0.1"          # a non-loopback host needs api_keys, or allow_remote = true
port = 8080
api_keys = ["..."]          # or GUARDRAIL_SERVE_API_KEYS="key1,key2" (replaces these)
allow_remote = false        # without keys: answer only loopback clients unless true
max_body_bytes = 1048576    # larger bodies get 413
request_timeout = 30.0      # seconds for a request's checks; then 504
max_in_flight = 64          # checks admitted at once; past it, 429 with Retry-After
retry_after = 1             # seconds, in every 429 / 503
model_name = "guardrail"    # the `model` field of moderation responses
warmup = true               # score once at start-up; /readyz is 200 after that
audit = "audit.jsonl"       # optional: every served check is recorded here ...
audit_format = "jsonl"      # ... as JSON lines, or "sqlite"
audit_include_content = false
upstream = "http://127.0.0.1:8000/v1"  # optional: proxy /v1/chat/completions and /v1/responses there
upstream_api_key = "..."    # or GUARDRAIL_UPSTREAM_API_KEY; sent upstream as the bearer key
upstream_timeout = 600.0    # seconds for the upstream's answer (a stream: between bytes)
on_block = "refuse"         # proxy: a blocked input or output is answered in-band (content_filter),
                            # or "error": a 400 with type "content_filter"
stream_mode = "hold"        # proxy streams: "hold" or "stream_first", checked every `every` chars
every = 200
```
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guardrail._exceptions import ConfigError

__all__ = ["ServeSettings", "is_loopback_host"]

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 (also IPv4-mapped) and the usual names for them."""
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def _positive_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    """Settings for `create_app` and `guardrail serve`; see the module docstring for each key.

    `api_keys` empty means no authentication, and then only loopback clients are answered
    unless `allow_remote` is true. With keys, any client that presents one is answered.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    api_keys: tuple[str, ...] = ()
    allow_remote: bool = False
    max_body_bytes: int = 1_048_576
    request_timeout: float = 30.0
    max_in_flight: int = 64
    retry_after: int = 1
    model_name: str = "guardrail"
    warmup: bool = True
    audit: str | None = None
    audit_format: str = "jsonl"
    audit_include_content: bool = False
    upstream: str | None = None
    upstream_api_key: str | None = None
    upstream_timeout: float = 600.0
    on_block: str = "refuse"
    stream_mode: str = "hold"
    every: int = 200

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"host must be a non-empty string, got {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be an integer in [0, 65535], got {self.port!r}")
        keys = self.api_keys
        if not isinstance(keys, (tuple, list)) or not all(isinstance(k, str) and k.strip() for k in keys):
            raise ConfigError("api_keys must be a list of non-empty strings")
        object.__setattr__(self, "api_keys", tuple(k.strip() for k in keys))
        _flag("allow_remote", self.allow_remote)
        _flag("warmup", self.warmup)
        _flag("audit_include_content", self.audit_include_content)
        _positive_int("max_body_bytes", self.max_body_bytes)
        _positive_int("max_in_flight", self.max_in_flight)
        _positive_int("retry_after", self.retry_after)
        object.__setattr__(self, "request_timeout", _positive_seconds("request_timeout", self.request_timeout))
        if not isinstance(self.model_name, str) or not self.model_name:
            raise ConfigError(f"model_name must be a non-empty string, got {self.model_name!r}")
        if self.audit is not None and (not isinstance(self.audit, str) or not self.audit):
            raise ConfigError(f"audit must be a file path, got {self.audit!r}")
        if self.audit_format not in ("jsonl", "sqlite"):
            raise ConfigError(f"audit_format must be 'jsonl' or 'sqlite', got {self.audit_format!r}")
        self._check_proxy()

    def _check_proxy(self) -> None:
        upstream = self.upstream
        if upstream is not None and (not isinstance(upstream, str) or not upstream.startswith(("http://", "https://"))):
            raise ConfigError(f"upstream must be an http(s) URL such as 'http://127.0.0.1:8000/v1', got {upstream!r}")
        if self.upstream_api_key is not None and (not isinstance(self.upstream_api_key, str) or not self.upstream_api_key):
            raise ConfigError("upstream_api_key must be a non-empty string")
        object.__setattr__(self, "upstream_timeout", _positive_seconds("upstream_timeout", self.upstream_timeout))
        if self.on_block not in ("refuse", "error"):
            raise ConfigError(f"on_block must be 'refuse' or 'error', got {self.on_block!r}")
        if self.stream_mode not in ("hold", "stream_first"):
            raise ConfigError(f"stream_mode must be 'hold' or 'stream_first', got {self.stream_mode!r}")
        _positive_int("every", self.every)

    @property
    def open_to_remote(self) -> bool:
        """Whether clients other than loopback ones may be answered."""
        return bool(self.api_keys) or self.allow_remote

    def check_bind(self) -> None:
        """Refuse a non-loopback `host` with no keys, unless `allow_remote` says so on purpose."""
        if not is_loopback_host(self.host) and not self.open_to_remote:
            raise ConfigError(
                f"refusing to listen on {self.host} without API keys: set serve.api_keys (or "
                "GUARDRAIL_SERVE_API_KEYS), or serve.allow_remote = true to serve anyone who can reach it"
            )

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, where: str = "serve") -> ServeSettings:
        """Settings from a `[serve]` table; errors name `where` and the key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        values = dict(table)
        if isinstance(values.get("api_keys"), list):
            values["api_keys"] = tuple(values["api_keys"])
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{where}.{exc}") from None
