"""A bounded loopback load test of `guardrail serve`: throughput, latency, overhead, overload.

The server runs in a subprocess (its own GIL) on a free loopback port; the load comes from
httpx.AsyncClient here. For 1, 16 and 64 concurrent clients it measures requests/s and p50/p99
latency of `POST /v1/checks`, and the same checks run in-process through `Guard.acheck` (the
server's overhead is the difference). Then it overloads a server whose scorer is slow and whose
`max_in_flight` is small: 429s are counted, nothing else may fail, the audit log must hold one
record per served check, and the server's RSS is read before and after everything. `GET /healthz`
rows give the floor: what the client, loopback HTTP and uvicorn cost with no check at all.

    python benchmarks/serve_load.py                      # keyword fake scorer (pure service cost)
    python benchmarks/serve_load.py --embedded           # the embedded model (slow on a CPU)
    python benchmarks/serve_load.py --requests 500 --seconds 20

Every row stops at `--requests` requests or `--seconds` seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
LEVELS = (1, 16, 64)

SERVER = textwrap.dedent("""
    import asyncio, json, sys
    import uvicorn
    from guardrail import Guard
    from guardrail.serve import ServeSettings, app_from_config
    from guardrail.testing import KeywordScorer

    options = json.loads(sys.argv[1])

    class Slow(KeywordScorer):
        async def ascore(self, requests):
            await asyncio.sleep(options["delay"])
            return self.score(requests)

    if options["embedded"]:
        scorer = None
    elif options["delay"]:
        scorer = Slow({"bomb": 0.99})
    else:
        scorer = KeywordScorer({"bomb": 0.99})
    settings = ServeSettings(port=options["port"], max_in_flight=options["max_in_flight"], audit=options["audit"],
                             request_timeout=600)
    app = app_from_config(options["config"], settings=settings, scorer=scorer)
    uvicorn.run(app, host="127.0.0.1", port=options["port"], log_level="warning", lifespan="on")
""")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _messages(i: int) -> list[dict[str, str]]:
    # Distinct turns: identical ones would share a prefill and flatter a real model.
    return [{"role": "user", "content": f"Request {i}: how long should bread dough rise at {18 + i % 10} C?"}]


class Server:
    def __init__(self, *, embedded: bool, delay: float, max_in_flight: int, audit: Path, config: Path | None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        options = {"embedded": embedded, "delay": delay, "max_in_flight": max_in_flight, "port": self.port,
                   "audit": str(audit), "config": str(config) if config else None}
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen([sys.executable, "-c", SERVER, json.dumps(options)], env=env)
        self.ps = psutil.Process(self.process.pid)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise SystemExit("the server did not become ready")

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


async def _drive(call: Callable[[int], Awaitable[int]], *, clients: int, requests: int, seconds: float
                 ) -> tuple[list[float], Counter[int], float]:
    """`clients` workers call `call(i)` until `requests` are done or `seconds` pass."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    next_index = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal next_index
        while next_index < requests and time.monotonic() < deadline:
            i = next_index
            next_index += 1
            start = time.perf_counter()
            status = await call(i)
            latencies.append(time.perf_counter() - start)
            statuses[status] += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, statuses, time.perf_counter() - start


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def _measured(process: psutil.Process, label: str, clients: int, call: Callable[[int], Awaitable[int]], *,
                    requests: int, seconds: float) -> dict:
    """A row, with the CPU time `process` spent per request (robust on a shared machine)."""
    me = psutil.Process()
    before, mine = _cpu(process), _cpu(me)
    row = _row(label, clients, *await _drive(call, clients=clients, requests=requests, seconds=seconds))
    row["cpu"] = (_cpu(process) - before) / max(row["n"], 1) * 1e3
    row["client_cpu"] = (_cpu(me) - mine) / max(row["n"], 1) * 1e3 if process.pid != me.pid else None
    _print_row(row)  # as it comes: a slow run that is cut short still shows what it measured
    return row


def _row(label: str, clients: int, latencies: list[float], statuses: Counter[int], wall: float) -> dict:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))] if ordered else float("nan")
    return {"path": label, "clients": clients, "n": len(latencies), "rps": len(latencies) / wall,
            "p50": statistics.median(ordered) * 1e3 if ordered else float("nan"), "p99": p99 * 1e3,
            "statuses": dict(sorted(statuses.items()))}


async def _http_rows(url: str, server: psutil.Process, *, requests: int, seconds: float) -> tuple[list[dict], int]:
    """The rows, and how many checks were served (200) in all, warm-up included."""
    rows = []
    for clients in LEVELS:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as http:
            async def call(i: int) -> int:
                response = await http.post("/v1/checks", json={"messages": _messages(i), "stage": "input"})
                return response.status_code

            async def floor(i: int) -> int:
                return (await http.get("/healthz")).status_code

            _, warm, _ = await _drive(call, clients=clients, requests=min(50, requests), seconds=seconds)
            rows.append(await _measured(server, "http POST /v1/checks", clients, call, requests=requests,
                                        seconds=seconds))
            rows[-1]["warm"] = warm[200]
            rows.append(await _measured(server, "http GET /healthz (floor)", clients, floor, requests=requests,
                                        seconds=seconds))
    served = sum(r.get("warm", 0) + r["statuses"].get(200, 0) for r in rows if r["path"].startswith("http POST"))
    return rows, served


async def _local_rows(guard, *, requests: int, seconds: float) -> list[dict]:  # noqa: ANN001
    rows = []
    for clients in LEVELS:
        async def call(i: int) -> int:
            await guard.acheck(_messages(i), "input")
            return 200

        await _drive(call, clients=clients, requests=min(50, requests), seconds=seconds)
        rows.append(await _measured(psutil.Process(), "in-process Guard.acheck", clients, call, requests=requests,
                                    seconds=seconds))
    return rows


def _local_guard(embedded: bool, config: Path | None):  # noqa: ANN202
    from guardrail import load_config
    from guardrail.testing import KeywordScorer

    return load_config(config).build_guard(scorer=None if embedded else KeywordScorer({"bomb": 0.99}))


def _print_header() -> None:
    print(f"{'path':<27} {'clients':>7} {'n':>6} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'cpu ms/req':>10} "
          f"{'client cpu':>10}  statuses", flush=True)


def _print_row(r: dict) -> None:
    print(f"{r['path']:<27} {r['clients']:>7} {r['n']:>6} {r['rps']:>9.1f} {r['p50']:>9.2f} {r['p99']:>9.2f} "
          f"{r['cpu']:>10.3f} {'-' if r['client_cpu'] is None else format(r['client_cpu'], '.3f'):>10}  "
          f"{r['statuses']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="loopback load test of guardrail serve")
    parser.add_argument("--embedded", action="store_true", help="score with the embedded model")
    parser.add_argument("--requests", type=int, help="requests per row (default 2000; 64 with --embedded)")
    parser.add_argument("--seconds", type=float, default=30.0, help="time cap per row")
    parser.add_argument("--config", type=Path, help="a configuration file (policies, model)")
    parser.add_argument("--overload-delay-ms", type=float, default=50.0, help="fake scorer delay past capacity")
    parser.add_argument("--overload-limit", type=int, default=8, help="max_in_flight past capacity")
    args = parser.parse_args(argv)
    requests = args.requests or (64 if args.embedded else 2000)
    scorer = "embedded model" if args.embedded else "keyword fake scorer"
    print(f"guardrail serve on loopback, {scorer}; up to {requests} requests or {args.seconds:g} s per row")
    _print_header()

    with tempfile.TemporaryDirectory() as tmp:
        audit = Path(tmp) / "audit.jsonl"
        server = Server(embedded=args.embedded, delay=0.0, max_in_flight=1024, audit=audit, config=args.config)
        try:
            server.wait_ready(600)
            rss_before = server.rss_mb()
            rows, served = asyncio.run(_http_rows(server.url, server.ps, requests=requests, seconds=args.seconds))
            rss_after = server.rss_mb()
        finally:
            server.stop()
        audited = len(audit.read_text().splitlines())
        rows += asyncio.run(_local_rows(_local_guard(args.embedded, args.config), requests=requests,
                                        seconds=args.seconds))

        audit_over = Path(tmp) / "audit-overload.jsonl"
        over = Server(embedded=False, delay=args.overload_delay_ms / 1000, max_in_flight=args.overload_limit,
                      audit=audit_over, config=args.config)
        try:
            over.wait_ready(120)
            over_before = over.rss_mb()
            overload = asyncio.run(_overload(over.url, requests=2000, seconds=args.seconds))
            over_after = over.rss_mb()
            alive = httpx.get(f"{over.url}/healthz").status_code == 200
        finally:
            over.stop()
        over_audited = len(audit_over.read_text().splitlines())

    print("cpu ms/req: CPU time of the server process (in-process rows: of this process) per request; "
          "client cpu: of the load generator (httpx) per request")
    http = {r["clients"]: r for r in rows if r["path"].startswith("http POST")}
    local = {r["clients"]: r for r in rows if r["path"].startswith("in-process")}
    print("server overhead (http p50 - in-process p50, ms): "
          + ", ".join(f"{c} clients {http[c]['p50'] - local[c]['p50']:+.2f}" for c in LEVELS))
    print("server CPU per check over the in-process check (ms): "
          + ", ".join(f"{c} clients {http[c]['cpu'] - local[c]['cpu']:+.3f}" for c in LEVELS))
    print(f"audit records {audited} == served checks {served}: {audited == served}; "
          f"server RSS {rss_before:.0f} -> {rss_after:.0f} MB")
    print(f"past capacity (scorer {args.overload_delay_ms:g} ms, max_in_flight {args.overload_limit}, 64 clients): "
          f"{overload['n']} requests, statuses {overload['statuses']}, {overload['rps']:.1f} req/s; "
          f"audit records {over_audited} == 200s {overload['statuses'].get(200, 0)}: "
          f"{over_audited == overload['statuses'].get(200, 0)}; alive after: {alive}; "
          f"RSS {over_before:.0f} -> {over_after:.0f} MB")
    return 0


async def _overload(url: str, *, requests: int, seconds: float) -> dict:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        async def call(i: int) -> int:
            response = await http.post("/v1/checks", json={"messages": _messages(i)})
            return response.status_code

        return _row("overload", 64, *await _drive(call, clients=64, requests=requests, seconds=seconds))


if __name__ == "__main__":
    raise SystemExit(main())
