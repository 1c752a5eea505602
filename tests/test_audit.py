"""The audit trail: what a record holds, what it leaves out, fail modes, durability under load."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest

from guardrail import ConfigError, Guard, ScoreRequest, Turn, builtin_policy
from guardrail._audit import JsonlAudit, SqliteAudit, audit_record, content_hash
from guardrail.testing import KeywordScorer

SECRET = "They are vermin and must be removed."


class InterleavingScorer:
    """Scores by keyword, yields to the event loop on the way, and fails on "boom"."""

    def __init__(self) -> None:
        self.inner = KeywordScorer({"vermin": 0.97})

    def _scores(self, requests: Sequence[ScoreRequest]) -> list[float]:
        if any("boom" in (r.turn.response or r.turn.prompt) for r in requests):
            raise RuntimeError("backend down")
        return self.inner.score(requests)

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        time.sleep(0)
        return self._scores(requests)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[float]:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return self._scores(requests)


def jsonl_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]


def sqlite_records(path: Path) -> list[dict]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        checks = [dict(row) for row in db.execute("SELECT * FROM guardrail_checks")]
        by_id = {c["check_id"]: {**c, "decisions": []} for c in checks}
        for row in db.execute("SELECT * FROM guardrail_decisions ORDER BY rowid"):
            decision = dict(row)
            decision["triggered"] = bool(decision["triggered"])
            by_id[decision.pop("check_id")]["decisions"].append(decision)
    finally:
        db.close()
    return list(by_id.values())


SINKS = {"jsonl": (JsonlAudit, "audit.jsonl", jsonl_records), "sqlite": (SqliteAudit, "audit.db", sqlite_records)}


@pytest.fixture(params=sorted(SINKS))
def sink(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    kind, name, read = SINKS[request.param]
    return lambda **options: kind(tmp_path / name, **options), lambda: read(tmp_path / name)


def guard_with(*observers: object, **policy_changes: object) -> Guard:
    policies = [builtin_policy(n, **policy_changes) for n in ("hate", "dangerous")]
    return Guard(policies, scorer=InterleavingScorer(), observers=observers)


class TestRecord:
    def test_a_record_holds_every_decision_and_a_hash_but_no_content(self, sink, tmp_path: Path) -> None:
        make, read = sink
        with make() as audit:
            verdict = guard_with(audit).check_input(SECRET)
        (record,) = read()
        assert verdict.blocked and record["outcome"] == "block" and record["stage"] == "input"
        datetime.fromisoformat(record["time"])
        expected = hashlib.sha256(json.dumps([SECRET, None], separators=(",", ":")).encode()).hexdigest()
        assert record["content_sha256"] == expected == content_hash(verdict.turn)
        hate, dangerous = record["decisions"]
        assert (hate["policy"], hate["score"], hate["threshold"], hate["action"], hate["triggered"]) == (
            "hate", 0.97, 0.5, "block", True)
        assert (dangerous["policy"], dangerous["triggered"], dangerous["error"]) == ("dangerous", True, None)
        assert record.get("prompt") is None and record.get("response") is None
        stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
        assert b"vermin" not in stored

    def test_content_is_stored_only_when_configured(self, sink) -> None:
        make, read = sink
        with make(include_content=True) as audit:
            guard_with(audit).check_output([{"role": "user", "content": "hi \ud800"},
                                            {"role": "assistant", "content": "caf\u00e9 " + SECRET}])
        (record,) = read()
        assert record["stage"] == "output" and record["message_index"] == 1
        assert record["response"] == "caf\u00e9 " + SECRET
        assert record["prompt"].startswith("hi ")  # a lone surrogate is kept (JSONL) or replaced (SQLite)

    def test_fail_mode_events_are_recorded(self, sink) -> None:
        make, read = sink
        with make() as audit:
            guard = Guard([builtin_policy("hate"), builtin_policy("dangerous", on_error="allow")],
                          scorer=InterleavingScorer(), observers=[audit])
            assert guard.check_input("boom").blocked
            only_allow = Guard([builtin_policy("hate", on_error="allow")],
                               scorer=InterleavingScorer(), observers=[audit])
            assert only_allow.check_input("boom").allowed
        failed_closed, failed_open = read()
        assert failed_closed["outcome"] == "block" and failed_open["outcome"] == "allow"
        hate, dangerous = failed_closed["decisions"]
        assert hate["score"] is None and "backend down" in hate["error"] and hate["fail_mode"] == "block"
        assert hate["triggered"] and not dangerous["triggered"] and dangerous["fail_mode"] == "allow"
        assert failed_open["decisions"][0]["error"] and failed_open["decisions"][0]["fail_mode"] == "allow"

    def test_a_raise_fail_mode_is_recorded_before_it_raises(self, sink) -> None:
        make, read = sink
        with make() as audit:
            guard = Guard([builtin_policy("hate", on_error="raise")], scorer=InterleavingScorer(),
                          observers=[audit])
            with pytest.raises(Exception, match="backend down"):
                guard.check_input("boom")
        (record,) = read()
        assert record["outcome"] == "raised"

    def test_a_key_makes_the_hash_an_hmac(self) -> None:
        turn = Turn(prompt="hi")
        assert content_hash(turn, key=b"k1") != content_hash(turn, key=b"k2") != content_hash(turn)

    def test_audit_record_is_json_safe_for_failed_scores(self) -> None:
        guard = Guard(["hate"], scorer=InterleavingScorer())
        record = audit_record(guard.check_input("boom"))
        json.dumps(record, allow_nan=False)
        assert record["decisions"][0]["score"] is None


class TestLifecycle:
    def test_a_closed_sink_fails_the_check_instead_of_dropping_the_record(self, sink) -> None:
        make, read = sink
        audit = make()
        guard = guard_with(audit)
        guard.check_input("hello")
        audit.close()
        audit.close()  # idempotent
        with pytest.raises(ConfigError, match="closed"):
            guard.check_input("hello again")
        assert len(read()) == 1

    def test_reopening_appends(self, sink) -> None:
        make, read = sink
        for _ in range(2):
            with make() as audit:
                guard_with(audit).check_input("hello")
        assert len(read()) == 2

    def test_options_are_validated(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="include_content"):
            JsonlAudit(tmp_path / "a.jsonl", include_content="yes")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="key"):
            SqliteAudit(tmp_path / "a.db", key="secret")  # type: ignore[arg-type]

    def test_sqlite_uses_wal(self, tmp_path: Path) -> None:
        with SqliteAudit(tmp_path / "a.db"):
            db = sqlite3.connect(tmp_path / "a.db")
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            db.close()


ASYNC_CALLS = 1000
THREADS, PER_THREAD = 4, 50


async def test_load_no_errors_no_lost_records(sink) -> None:
    """1,000 concurrent async checks and 4 threads of sync checks on one guard and one sink."""
    make, read = sink
    expected: Counter[str] = Counter()

    def text(i: int) -> str:
        return f"message {i}" + (" vermin" if i % 7 == 0 else "") + (" boom" if i % 50 == 0 else "")

    async_texts = [text(i) for i in range(ASYNC_CALLS)]
    thread_texts = [[text(ASYNC_CALLS + t * PER_THREAD + i) for i in range(PER_THREAD)] for t in range(THREADS)]
    for t in async_texts + [t for chunk in thread_texts for t in chunk]:
        expected[content_hash(Turn(prompt=t))] += 1
    errors: list[BaseException] = []

    with make() as audit:
        guard = guard_with(audit)

        def worker(texts: list[str]) -> None:
            try:
                for t in texts:
                    guard.check_input(t)
            except BaseException as exc:  # collected, asserted below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(chunk,)) for chunk in thread_texts]
        for t in threads:
            t.start()
        verdicts = await asyncio.gather(*(guard.acheck_input(t) for t in async_texts), return_exceptions=True)
        for t in threads:
            await asyncio.to_thread(t.join)
        written = audit.written

    errors += [v for v in verdicts if isinstance(v, BaseException)]
    assert errors == []
    records = read()
    total = ASYNC_CALLS + THREADS * PER_THREAD
    assert written == len(records) == total
    assert Counter(r["content_sha256"] for r in records) == expected
    assert len({r["check_id"] for r in records}) == total
    assert all(len(r["decisions"]) == 2 for r in records)
    failed = [r for r in records if r["decisions"][0]["error"]]
    assert len(failed) == sum(1 for i in range(total) if i % 50 == 0)
    assert all(r["outcome"] == "block" for r in failed)
    assert sum(r["outcome"] == "block" for r in records) == sum(1 for i in range(total) if i % 7 == 0 or i % 50 == 0)
