"""An audit trail: observers that write every check's decisions to a durable sink.

>>> from guardrail import Guard
>>> from guardrail.testing import KeywordScorer
>>> with JsonlAudit("audit.jsonl") as audit:                                  # doctest: +SKIP
...     guard = Guard(["hate"], scorer=KeywordScorer({"vermin": 0.97}), observers=[audit])
...     guard.check_input("They are vermin.").blocked
True

Each check gives one record (`audit_record`): its time, stage, outcome, a content hash and
one entry per decision (policy, score, threshold, action, triggered, and the fail-mode error
when the scorer failed). The content itself is stored only with `include_content=True`.

Durability: writes are synchronous under a lock. When `Guard.check_*` returns, its record is
on disk (JSONL: written and `fsync`ed; SQLite: committed in WAL mode with `synchronous=FULL`).
An observer that raises fails the check, so a check whose record could not be written raises
instead of returning a verdict: no decision goes unrecorded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import sqlite3
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from guardrail._exceptions import ConfigError
from guardrail._messages import Turn
from guardrail._policies import FailMode
from guardrail._verdict import Verdict

__all__ = ["JsonlAudit", "SqliteAudit", "audit_record", "content_hash"]


def content_hash(turn: Turn, *, key: bytes | None = None) -> str:
    """SHA-256 (HMAC-SHA-256 with `key`) of `json.dumps([prompt, response])`, hex.

    The encoding is unambiguous and documented so a record can be matched to a text later:
    >>> content_hash(Turn(prompt="hi"))[:12]
    '241a27b6fbc6'

    A plain hash of a short text can be reversed by guessing; pass a secret `key` when the
    trail leaves trusted hands.
    """
    data = json.dumps([turn.prompt, turn.response], separators=(",", ":")).encode("ascii")
    if key is not None:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def _outcome(verdict: Verdict) -> str:
    # A `raise` fail mode raises instead of returning: say so rather than "allow".
    if any(d.fail_mode is FailMode.RAISE for d in verdict.errors):
        return "raised"
    return verdict.outcome.value


def audit_record(
    verdict: Verdict,
    *,
    include_content: bool = False,
    key: bytes | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One check as a JSON-safe dict (pure). Scores are `None` where the scorer failed.

    >>> record = audit_record(verdict)                                       # doctest: +SKIP
    >>> record["outcome"], [d["policy"] for d in record["decisions"]]        # doctest: +SKIP
    ('block', ['hate'])
    """
    when = now if now is not None else datetime.now(timezone.utc)
    record: dict[str, Any] = {
        "check_id": uuid.uuid4().hex,
        "time": when.isoformat(),
        "stage": verdict.stage.value,
        "outcome": _outcome(verdict),
        "message_index": verdict.message_index,
        "content_sha256": content_hash(verdict.turn, key=key),
        "decisions": [
            {
                "policy": d.policy,
                "score": None if math.isnan(d.score) else d.score,
                "threshold": d.threshold,
                "action": d.action.value,
                "triggered": d.triggered,
                "error": d.error,
                "fail_mode": None if d.fail_mode is None else d.fail_mode.value,
            }
            for d in verdict.decisions
        ],
    }
    if include_content:
        record["prompt"] = verdict.turn.prompt
        record["response"] = verdict.turn.response
    return record


_S = TypeVar("_S", bound="_Sink")


class _Sink:
    """What both sinks share: options, the lock, the closed state, the observer call."""

    def __init__(self, path: str | os.PathLike[str], *, include_content: bool, key: bytes | None) -> None:
        if not isinstance(include_content, bool):
            raise ConfigError(f"include_content must be a bool, got {include_content!r}")
        if key is not None and not isinstance(key, bytes):
            raise ConfigError("key must be bytes or None")
        self.path = Path(path)
        self.include_content = include_content
        self.key = key
        self.written = 0
        self._lock = threading.Lock()
        self._closed = False

    def __call__(self, verdict: Verdict) -> None:
        record = audit_record(verdict, include_content=self.include_content, key=self.key)
        with self._lock:
            if self._closed:
                raise ConfigError(f"the audit log {self.path} is closed")
            self._write(record)
            self.written += 1

    def _write(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Close the sink; later checks that reach it raise `ConfigError`. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._release()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, include_content={self.include_content})"


class JsonlAudit(_Sink):
    """Appends one JSON object per check (its decisions nested) to `path`, then fsyncs.

    >>> audit = JsonlAudit("audit.jsonl")            # doctest: +SKIP
    >>> guard = Guard(observers=[audit])             # doctest: +SKIP

    A record is a single `write` to a file opened with `O_APPEND`, so lines never interleave,
    even between processes on a local filesystem. Lines are ASCII (`ensure_ascii`), any text
    included. Only a crash or a full disk in the middle of a write can leave a last line
    without its newline; readers should skip such a line. Set `fsync=False` to trade
    durability on power loss for speed (the OS still has the line).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        include_content: bool = False,
        key: bytes | None = None,
        fsync: bool = True,
    ) -> None:
        super().__init__(path, include_content=include_content, key=key)
        self.fsync = bool(fsync)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n").encode("ascii")
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view):]
        if self.fsync:
            os.fsync(self._fd)

    def _release(self) -> None:
        os.close(self._fd)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS guardrail_checks (
    check_id TEXT PRIMARY KEY,
    time TEXT NOT NULL,
    stage TEXT NOT NULL,
    outcome TEXT NOT NULL,
    message_index INTEGER NOT NULL,
    content_sha256 TEXT NOT NULL,
    prompt TEXT,
    response TEXT
);
CREATE TABLE IF NOT EXISTS guardrail_decisions (
    check_id TEXT NOT NULL REFERENCES guardrail_checks(check_id),
    policy TEXT NOT NULL,
    score REAL,
    threshold REAL NOT NULL,
    action TEXT NOT NULL,
    triggered INTEGER NOT NULL,
    error TEXT,
    fail_mode TEXT,
    PRIMARY KEY (check_id, policy)
);
"""


def _storable(text: str | None) -> str | None:
    # sqlite3 encodes strictly; a lone surrogate must not make the write (and the check) fail.
    if text is None:
        return None
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


class SqliteAudit(_Sink):
    """Writes each check to `guardrail_checks` and its decisions to `guardrail_decisions`.

    >>> with SqliteAudit("audit.db") as audit:                                 # doctest: +SKIP
    ...     Guard(observers=[audit]).check_input("hi")
    >>> # SELECT policy, avg(score) FROM guardrail_decisions GROUP BY policy

    One transaction per check (all its decisions or none), WAL journal, `synchronous=FULL`.
    """

    def __init__(self, path: str | os.PathLike[str], *, include_content: bool = False, key: bytes | None = None) -> None:
        super().__init__(path, include_content=include_content, key=key)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error:
            self._db.close()
            raise

    def _write(self, record: dict[str, Any]) -> None:
        with self._db:  # with isolation_level=None: an explicit transaction below
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO guardrail_checks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record["check_id"], record["time"], record["stage"], record["outcome"],
                 record["message_index"], record["content_sha256"],
                 _storable(record.get("prompt")), _storable(record.get("response"))),
            )
            self._db.executemany(
                "INSERT INTO guardrail_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(record["check_id"], d["policy"], d["score"], d["threshold"], d["action"],
                  int(d["triggered"]), d["error"], d["fail_mode"]) for d in record["decisions"]],
            )

    def _release(self) -> None:
        self._db.close()
