"""Test helpers for guardrail.serve: a real uvicorn server on a free loopback port, in a thread,
and scorers that wait for the test to let them go."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn

from guardrail import ScoreRequest
from guardrail.testing import KeywordScorer


@dataclass
class Running:
    url: str
    app: object
    server: uvicorn.Server

    @property
    def served(self):  # noqa: ANN201 - the app's ServedGuard
        return self.app.state.guardrail

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0, **kwargs)


def wait_until(condition, *, timeout: float = 10.0, what: str = "condition") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@contextmanager
def running(app, *, ready: bool = True) -> Iterator[Running]:  # noqa: ANN001
    """Serve `app` with uvicorn on 127.0.0.1:<free port> in a thread; stop it on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), what="uvicorn to start")
        assert server.started, "uvicorn did not start"
        result = Running(url=f"http://127.0.0.1:{port}", app=app, server=server)
        if ready:
            wait_until(lambda: result.served.ready, what="the scorer warm-up")
        yield result
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


class HeldScorer(KeywordScorer):
    """A keyword scorer whose async scoring waits, for texts containing `hold_word`, until
    `release` is set (in a worker thread, so the server's loop keeps running)."""

    def __init__(self, keywords: dict[str, float], *, hold_word: str = "wait", **kwargs: object) -> None:
        super().__init__(keywords, **kwargs)
        self.hold_word = hold_word
        self.release = threading.Event()
        self.holding = 0

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[float]:
        if any(self.hold_word in (r.turn.response or r.turn.prompt) for r in requests):
            self.holding += 1
            try:
                await asyncio.to_thread(self.release.wait, 20)
            finally:
                self.holding -= 1
        return self.score(requests)
