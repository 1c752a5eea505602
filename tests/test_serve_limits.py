"""guardrail.serve in production: keys, the loopback rule, size and time limits, back-pressure,
audit records, and a graceful shutdown that drains requests in flight."""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import httpx
import pytest
from serving import HeldScorer, running, wait_until
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from guardrail import BatchingScorer, Guard, JsonlAudit
from guardrail._cli import main
from guardrail.serve import ServeSettings, app_from_config, create_app, served_guard
from guardrail.testing import KeywordScorer, RecordingScorer

ROOT = Path(__file__).resolve().parents[1]


def guard(scorer: object | None = None, **kwargs: object) -> Guard:
    return Guard(["hate"], scorer=scorer or KeywordScorer({"vermin": 0.97}), **kwargs)


# --- authentication and the loopback rule -----------------------------------------------------
def test_keys_are_required_when_configured() -> None:
    app = create_app(guard(), settings=ServeSettings(api_keys=("key-one", "key-two")))
    with running(app) as server, server.client() as http:
        missing = http.post("/v1/checks", json={"messages": "hi"})
        wrong = http.post("/v1/checks", json={"messages": "hi"}, headers={"Authorization": "Bearer key-three"})
        basic = http.post("/v1/checks", json={"messages": "hi"}, headers={"Authorization": "Basic a2V5LW9uZQ=="})
        right = http.post("/v1/checks", json={"messages": "hi"}, headers={"Authorization": "Bearer key-two"})
        header = http.post("/v1/checks", json={"messages": "hi"}, headers={"x-api-key": "key-one"})
        metrics = http.get("/metrics")
        health = http.get("/healthz"), http.get("/readyz")
    assert missing.status_code == wrong.status_code == basic.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "missing API key" in missing.json()["error"]["message"]
    assert "invalid API key" in wrong.json()["error"]["message"]
    assert right.status_code == header.status_code == 200
    assert metrics.status_code == 401  # metrics need a key too
    assert [r.status_code for r in health] == [200, 200]  # probes don't


def test_every_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    app = create_app(guard(), settings=ServeSettings(api_keys=("k1", "k2", "k3")))
    with running(app) as server, server.client() as http:
        assert http.post("/v1/checks", json={"messages": "hi"}, headers={"Authorization": "Bearer k1"}).status_code == 200
    assert len(compared) == 3  # no early exit on the first match
    assert {len(a) for a, _ in compared} == {len(b) for _, b in compared} == {32}  # digests: one length


def _asgi_call(app, client: tuple[str, int], path: str = "/v1/checks") -> httpx.Response:  # noqa: ANN001
    async def call() -> httpx.Response:
        async with app.router.lifespan_context(app):
            await asyncio.sleep(0)
            wait = 0
            while not app.state.guardrail.ready and wait < 500:
                await asyncio.sleep(0.01)
                wait += 1
            transport = httpx.ASGITransport(app=app, client=client)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                return await http.post(path, json={"messages": "hi"})
    return asyncio.run(call())


@pytest.mark.parametrize("client, status", [(("203.0.113.9", 4000), 403), (("10.1.2.3", 4000), 403),
                                            (("127.0.0.1", 4000), 200), (("::1", 4000), 200)])
def test_without_keys_only_loopback_clients_are_answered(client: tuple[str, int], status: int) -> None:
    response = _asgi_call(create_app(guard()), client)
    assert response.status_code == status
    if status == 403:
        assert "only loopback clients" in response.json()["error"]["message"]


def test_allow_remote_opens_the_service_without_keys() -> None:
    app = create_app(guard(), settings=ServeSettings(allow_remote=True))
    assert _asgi_call(app, ("203.0.113.9", 4000)).status_code == 200


def test_keys_open_the_service_to_remote_clients_that_present_one() -> None:
    app = create_app(guard(), settings=ServeSettings(api_keys=("k",)))
    assert _asgi_call(app, ("203.0.113.9", 4000)).status_code == 401


def test_cli_refuses_a_remote_bind_without_keys_before_loading_anything(capsys) -> None:  # noqa: ANN001
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2  # no scorer given: nothing loaded
    assert "refusing to listen on 0.0.0.0 without API keys" in capsys.readouterr().err


# --- request size -----------------------------------------------------------------------------
def test_bodies_over_the_limit_get_413_declared_or_chunked() -> None:
    app = create_app(guard(), settings=ServeSettings(max_body_bytes=200))
    body = json.dumps({"messages": "x" * 300}).encode()

    def chunks():  # noqa: ANN202 - no Content-Length: the limit must count what arrives
        for start in range(0, len(body), 64):
            yield body[start:start + 64]

    with running(app) as server, server.client() as http:
        declared = http.post("/v1/checks", content=body, headers={"content-type": "application/json"})
        chunked = http.post("/v1/checks", content=chunks(), headers={"content-type": "application/json"})
        small = http.post("/v1/checks", json={"messages": "hi"})
    assert declared.status_code == chunked.status_code == 413
    assert "larger than 200 bytes" in chunked.json()["error"]["message"]
    assert small.status_code == 200


# --- time limits ------------------------------------------------------------------------------
def test_request_timeout_answers_504_and_the_service_goes_on() -> None:
    scorer = HeldScorer({"vermin": 0.97})
    app = create_app(guard(scorer), settings=ServeSettings(request_timeout=0.3))
    with running(app) as server, server.client() as http:
        slow = http.post("/v1/checks", json={"messages": "please wait"})
        scorer.release.set()
        after = http.post("/v1/checks", json={"messages": "vermin"})
        assert server.served.in_flight == 0
    assert slow.status_code == 504 and "serve.request_timeout" in slow.json()["error"]["message"]
    assert after.status_code == 200 and after.json()["outcome"] == "block"


def test_the_guards_own_timeout_follows_the_fail_mode_instead() -> None:
    scorer = HeldScorer({"vermin": 0.97})
    app = create_app(guard(scorer, timeout=0.2), settings=ServeSettings(request_timeout=10))
    with running(app) as server, server.client() as http:
        body = http.post("/v1/checks", json={"messages": "please wait"}).json()
        scorer.release.set()
    assert body["outcome"] == "block" and "timed out" in body["errors"][0]["error"]


# --- back-pressure ----------------------------------------------------------------------------
def _post_in_thread(url: str, payload: dict, results: list) -> threading.Thread:  # noqa: ANN001
    def post() -> None:
        with httpx.Client(base_url=url, timeout=20) as http:
            results.append(http.post("/v1/checks", json=payload))
    thread = threading.Thread(target=post)
    thread.start()
    return thread


def test_past_max_in_flight_answers_429_with_retry_after_and_recovers() -> None:
    scorer = HeldScorer({"vermin": 0.97})
    app = create_app(guard(scorer), settings=ServeSettings(max_in_flight=2, retry_after=3))
    with running(app) as server, server.client() as http:
        results: list[httpx.Response] = []
        threads = [_post_in_thread(server.url, {"messages": "wait"}, results) for _ in range(2)]
        wait_until(lambda: scorer.holding == 2, what="two checks in flight")
        busy = http.post("/v1/checks", json={"messages": "hi"})
        too_many = http.post("/v1/moderations", json={"input": ["a", "b", "c"]})
        scorer.release.set()
        for thread in threads:
            thread.join()
        after = http.post("/v1/checks", json={"messages": "vermin"})
    assert busy.status_code == 429 and busy.headers["retry-after"] == "3"
    assert "busy" in busy.json()["error"]["message"]
    assert too_many.status_code == 413 and "at most 2" in too_many.json()["error"]["message"]
    assert [r.status_code for r in results] == [200, 200]
    assert after.status_code == 200 and after.json()["outcome"] == "block"


def test_a_full_batching_queue_answers_503_with_retry_after() -> None:
    inner = HeldScorer({"vermin": 0.97})
    scorer = BatchingScorer(inner, max_batch=1, max_wait_ms=0, max_pending=1)
    with running(create_app(guard(scorer))) as server, server.client() as http:
        results: list[httpx.Response] = []
        first = _post_in_thread(server.url, {"messages": "wait 1"}, results)
        wait_until(lambda: inner.holding == 1, what="a batch running")
        second = _post_in_thread(server.url, {"messages": "wait 2"}, results)
        wait_until(lambda: "guardrail_scorer_queue_depth 1.0" in http.get("/metrics").text, what="a queued request")
        full = http.post("/v1/checks", json={"messages": "hi"})
        inner.release.set()
        first.join()
        second.join()
    assert full.status_code == 503 and full.headers["retry-after"] == "1"
    assert "queue is full" in full.json()["error"]["message"]
    assert [r.status_code for r in results] == [200, 200]


# --- shared forwards, and routes added later --------------------------------------------------
def test_concurrent_checks_share_the_batching_scorers_forwards() -> None:
    inner = RecordingScorer(KeywordScorer({"vermin": 0.97}))
    scorer = BatchingScorer(inner, max_batch=64, max_wait_ms=50)
    app = create_app(Guard(["hate", "dangerous"], scorer=scorer), settings=ServeSettings(warmup=False))
    with running(app) as server, server.client() as http:
        texts = [f"text number {i}" for i in range(8)] + ["they are vermin"]
        results = http.post("/v1/moderations", json={"input": texts}).json()["results"]
    assert [r["flagged"] for r in results] == [False] * 8 + [True]
    assert [len(batch) for batch in inner.batches] == [18]  # 9 checks x 2 policies, one forward


async def _extra(request: Request) -> JSONResponse:
    [verdict] = await served_guard(request).check_many([("they are vermin", "input")], endpoint="/v1/extra")
    return JSONResponse({"blocked": verdict.blocked})


def test_added_routes_sit_behind_the_gate_and_check_through_the_served_guard() -> None:
    app = create_app(guard(), settings=ServeSettings(api_keys=("k",)), routes=[Route("/v1/extra", _extra)])
    with running(app) as server, server.client() as http:
        refused = http.get("/v1/extra")
        allowed = http.get("/v1/extra", headers={"Authorization": "Bearer k"})
        metrics = http.get("/metrics", headers={"Authorization": "Bearer k"}).text
    assert refused.status_code == 401
    assert allowed.json() == {"blocked": True}
    assert 'guardrail_checks_total{endpoint="/v1/extra",outcome="block",stage="input"} 1.0' in metrics


# --- audit ------------------------------------------------------------------------------------
def test_every_served_check_is_audited(tmp_path: Path) -> None:
    config = tmp_path / "guard.toml"
    config.write_text('[serve]\naudit = "audit.jsonl"\n\n[policies.hate]\nthreshold = 0.5\n')
    app = app_from_config(config, scorer=KeywordScorer({"vermin": 0.97}))
    with running(app) as server, server.client() as http:
        http.post("/v1/moderations", json={"input": ["hello", "they are vermin"]})
        http.post("/v1/checks", json={"messages": "bread?"})
        http.post("/beta/litellm_basic_guardrail_api", json={"texts": ["vermin"], "input_type": "request"})
        http.post("/v1/checks", json={"messages": 7})  # refused before any check: no record
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert sorted(r["outcome"] for r in records) == ["allow", "allow", "block", "block"]
    assert all("prompt" not in r for r in records)  # content stays out unless asked for


def test_a_check_whose_audit_record_cannot_be_written_fails(tmp_path: Path) -> None:
    audit = JsonlAudit(tmp_path / "audit.jsonl")
    audit.close()  # every later write raises
    app = create_app(Guard(["hate"], scorer=KeywordScorer({}), observers=[audit]))
    with running(app) as server, server.client() as http:
        response = http.post("/v1/checks", json={"messages": "hello"})
    assert response.status_code == 500 and response.json()["error"]["type"] == "server_error"


# --- graceful shutdown ------------------------------------------------------------------------
SLOW_SERVER = textwrap.dedent("""
    import asyncio, sys
    from guardrail._cli import main
    from guardrail.testing import KeywordScorer

    class Slow(KeywordScorer):
        async def ascore(self, requests):
            if any("slow" in r.turn.prompt for r in requests):
                await asyncio.sleep(1.5)
                print("scored-slow", flush=True)
            return self.score(requests)

        async def aclose(self):
            print("closed", flush=True)

    sys.exit(main(["serve", "--config", sys.argv[1], "--port", sys.argv[2], "--log-level", "warning"],
                  scorer=Slow({"vermin": 0.97})))
""")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sigterm_drains_requests_in_flight_then_closes_the_scorer(tmp_path: Path) -> None:
    config = tmp_path / "guard.toml"
    config.write_text('[serve]\naudit = "audit.jsonl"\n')
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    results: list[httpx.Response] = []
    # The context manager closes the pipes and reaps the process however the test ends.
    with subprocess.Popen([sys.executable, "-c", SLOW_SERVER, str(config), str(port)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            def ready() -> bool:
                if process.poll() is not None:
                    raise AssertionError("the server exited")
                try:
                    return httpx.get(f"{url}/readyz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(ready, timeout=60, what="the server")
            thread = _post_in_thread(url, {"messages": "a slow one about vermin"}, results)
            wait_until(lambda: "guardrail_checks_in_flight 1.0" in httpx.get(f"{url}/metrics").text, what="in flight")
            process.send_signal(signal.SIGTERM)
            thread.join(20)
        finally:
            if process.poll() is None and not results:
                process.kill()
            out, err = process.communicate(timeout=30)
    assert [r.status_code for r in results] == [200], err
    assert results[0].json()["outcome"] == "block"
    assert process.returncode in (0, -signal.SIGTERM), err  # uvicorn re-raises the signal once drained
    assert out.split() == ["scored-slow", "closed"]  # drained first, then the scorer closed
    [record] = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert record["outcome"] == "block"
