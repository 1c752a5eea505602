"""A vLLM-shaped completions server on loopback for tests: real HTTP, answers from a tiny model or a table,
and 18 ways to fail on purpose."""

from __future__ import annotations

import json
import math
import socket
import struct
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


Answer = Callable[[dict[str, Any]], dict[str, Any]]

# Each fault answers one HTTP request; `ok` answers it properly.
SERVER_FAULTS = (
    "500", "502", "503", "429", "hang", "drop", "reset", "malformed", "html", "error_200",
    "no_logprobs", "missing_no", "nan_logprob", "string_logprob", "few_choices", "many_choices",
    "bad_index", "list_body",
)
TRANSIENT = {"500", "502", "503", "429", "hang", "drop", "reset"}


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and left: expected here


class CompletionsServer:
    """A loopback `/v1/completions` server: `answer(body) -> dict` for good requests.

    `plan(fault, after=k)`: the next `k` requests are answered properly, every later one with
    `fault` (sticky until the next plan; `times=m` limits it to `m` requests). `bodies` records
    the JSON bodies; `requests` counts them. Use as a context manager.
    """

    def __init__(self, answer: Answer, *, hang: float = 5.0) -> None:
        self.answer = answer
        self.hang = hang
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.requests = 0
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._fault, self._after, self._times = "ok", 0, None
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def plan(self, fault: str, *, after: int = 0, times: int | None = None) -> None:
        with self._lock:
            self._fault, self._after, self._times = fault, after, times

    def _next_fault(self) -> str:
        with self._lock:
            self.requests += 1
            if self._after > 0:
                self._after -= 1
                return "ok"
            if self._times is not None:
                if self._times <= 0:
                    return "ok"
                self._times -= 1
            return self._fault

    def __enter__(self) -> CompletionsServer:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()  # headers and body go out in two writes: don't let Nagle hold the second
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fault = server._next_fault()
                if self.path != "/v1/completions":
                    return self._send(404, b'{"error": {"message": "not found"}}')
                body = json.loads(raw)
                with server._lock:
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers))
                if fault in ("500", "502", "503", "429"):
                    return self._send(int(fault), b'{"error": {"message": "injected"}}')
                if fault == "hang":
                    server.release.wait(server.hang)
                    return self._send(503, b'{"error": {"message": "too late"}}')
                if fault in ("drop", "reset"):
                    if fault == "reset":  # RST instead of FIN
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return None
                if fault == "malformed":
                    return self._send(200, b'{"choices": [{"index": 0, "logprobs": {"top_logpro')
                if fault == "html":
                    return self._send(200, b"<html><body>Bad gateway</body></html>", "text/html")
                if fault == "error_200":
                    return self._send(200, b'{"error": {"message": "engine dead"}}')
                if fault == "list_body":
                    return self._send(200, b"[1, 2, 3]")
                answer = server.answer(body)
                return self._send(200, json.dumps(_break(answer, fault)).encode())

        return Handler


def _break(answer: dict[str, Any], fault: str) -> dict[str, Any]:
    """A proper answer, broken the way `fault` says (`ok` leaves it alone)."""
    choices = answer["choices"]
    if fault == "few_choices":
        answer["choices"] = choices[:-1]
    elif fault == "many_choices":
        answer["choices"] = [*choices, {**choices[-1], "index": len(choices)}]
    elif fault == "bad_index":  # repeated, or out of range for a single choice
        answer["choices"] = [{**c, "index": 0 if len(choices) > 1 else 1} for c in choices]
    for choice in choices:
        top = choice["logprobs"]["top_logprobs"][0] if choice.get("logprobs") else {}
        if fault == "no_logprobs":
            choice["logprobs"] = None
        elif fault == "missing_no":
            for key in [k for k in top if k != choice["logprobs"]["tokens"][0]]:
                del top[key]  # only the sampled answer is left
        elif fault in ("nan_logprob", "string_logprob"):
            for key in top:
                top[key] = math.nan if fault == "nan_logprob" else "high"
    return answer


def vllm_response(prompts: list[list[int]], rows: list[dict[int, float]], sampled: list[int],
                  body: dict[str, Any], decode: Callable[[int], str]) -> dict[str, Any]:
    """The JSON vLLM's `/v1/completions` returns, from per-prompt `{token id: logprob}` rows."""
    as_ids = body.get("return_tokens_as_token_ids")
    name = (lambda i: f"token_id:{i}") if as_ids else decode
    choices = []
    for n, (row, token) in enumerate(zip(rows, sampled)):
        choices.append({
            "index": n, "text": decode(token), "finish_reason": "length", "stop_reason": None,
            "logprobs": {"text_offset": [0], "token_logprobs": [max(row[token], -9999.0)],
                         "tokens": [name(token)],
                         "top_logprobs": [{name(i): max(lp, -9999.0) for i, lp in row.items()}]},
        })
    used = sum(len(p) for p in prompts)
    return {"id": "cmpl-test", "object": "text_completion", "created": 1700000000, "model": body.get("model", "m"),
            "choices": choices, "usage": {"prompt_tokens": used, "completion_tokens": len(prompts),
                                          "total_tokens": used + len(prompts)}}


def _selected(body: dict[str, Any], logprobs: Any, allowed: list[int] | None, *, honour_ids: bool) -> tuple[dict[int, float], int]:
    """vLLM's selection: the sampled token (greedy among `allowed_token_ids`) plus the explicit
    `logprob_token_ids`, or else the top `logprobs`."""
    import torch

    sampled = max(allowed, key=lambda i: logprobs[i].item()) if allowed else int(torch.argmax(logprobs))
    wanted = body.get("logprob_token_ids") if honour_ids else None
    ids = list(wanted) if wanted else torch.topk(logprobs, int(body["logprobs"])).indices.tolist()
    return {i: logprobs[i].item() for i in [sampled, *ids]}, sampled


class ModelAnswer:
    """Answers from a transformers model: last-position logits, log-softmax in float32.

    `honour_ids=False` plays an older vLLM without `logprob_token_ids`; `logprobs_mode`
    `processed_logprobs` applies the allowed-token whitelist before the log-softmax.
    """

    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForCausalLM.from_pretrained(
            str(model_dir), dtype=torch.float32, attn_implementation="eager"
        ).eval()
        self.honour_ids, self.logprobs_mode = True, "raw_logprobs"
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        import torch

        prompts = body["prompt"] if isinstance(body["prompt"][0], list) else [body["prompt"]]
        allowed = body.get("allowed_token_ids")
        rows, sampled = [], []
        for ids in prompts:
            with self._lock, torch.inference_mode():
                logits = self.model(input_ids=torch.tensor([ids]), logits_to_keep=1).logits[0, -1].float()
            if self.logprobs_mode == "processed_logprobs" and allowed:
                masked = torch.full_like(logits, -math.inf)
                masked[allowed] = logits[allowed]
                logits = masked
            row, token = _selected(body, torch.log_softmax(logits, dim=-1), allowed, honour_ids=self.honour_ids)
            rows.append(row)
            sampled.append(token)
        return vllm_response(prompts, rows, sampled, body, lambda i: self.tokenizer.decode([i]))


def table_answer(tokenizer: Any, *, harmful: str = "detonate", high: float = 0.99, low: float = 0.02) -> Answer:
    """Answers from a table: P(Yes) is `high` when the decoded prompt contains `harmful`."""
    def answer(body: dict[str, Any]) -> dict[str, Any]:
        prompts = body["prompt"] if isinstance(body["prompt"][0], list) else [body["prompt"]]
        yes, no = body["logprob_token_ids"]
        rows, sampled = [], []
        for ids in prompts:
            p = high if harmful in tokenizer.decode(ids) else low
            rows.append({yes: math.log(p), no: math.log1p(-p), 17: math.log(1e-9)})
            sampled.append(yes if p >= 0.5 else no)
        return vllm_response(prompts, rows, sampled, body, lambda i: tokenizer.decode([i]))

    return answer
