"""Cross-request batching: right scores per caller, bounded batches and queue, errors, cancellation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from guardrail import ConfigError, Guard, ScoreRequest, ScorerError, Turn
from guardrail._batching import BatchingScorer
from guardrail.testing import FunctionScorer, KeywordScorer, RecordingScorer, check_scorer_contract


def item_score(request: ScoreRequest) -> float:
    """`"item 17"` scores 0.17: every caller can tell its own score from anyone else's."""
    return int(request.turn.prompt.split()[-1]) / 100


class Gate:
    """A scorer that blocks inside `score` until `open()`: it holds a batch in flight."""

    def __init__(self, inner: RecordingScorer) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self._gate = threading.Event()

    def open(self) -> None:
        self._gate.set()

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        self.entered.set()
        if not self._gate.wait(10):
            raise TimeoutError("the test never opened the gate")
        return self.inner.score(requests)


class FailOn:
    """Raises for any batch containing `word`; otherwise scores 0.01."""

    def __init__(self, word: str) -> None:
        self.word = word
        self.batches: list[list[str]] = []

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        prompts = [r.turn.prompt for r in requests]
        self.batches.append(prompts)
        if any(self.word in p for p in prompts):
            raise RuntimeError("model crashed")
        return [0.01] * len(requests)


def request(text: str) -> ScoreRequest:
    return ScoreRequest(turn=Turn(prompt=text), guideline='"No Tests": no tests.')


async def wait_until_in_flight(gate: Gate) -> None:
    assert await asyncio.to_thread(gate.entered.wait, 10)
    for _ in range(5):  # let every runnable caller reach its await
        await asyncio.sleep(0)


def test_contract() -> None:
    check_scorer_contract(BatchingScorer(KeywordScorer({"longer": 0.8})))
    check_scorer_contract(BatchingScorer(RecordingScorer(KeywordScorer({"longer": 0.8})), max_wait_ms=0))


def test_sync_score_passes_through() -> None:
    inner = RecordingScorer(FunctionScorer(item_score))
    scorer = BatchingScorer(inner)
    assert scorer.score([request("item 3"), request("item 4")]) == [0.03, 0.04]
    assert [len(b) for b in inner.batches] == [2]


@pytest.mark.parametrize(
    "options",
    [{"max_batch": 0}, {"max_batch": 2.5}, {"max_pending": 0}, {"max_wait_ms": -1}, {"max_wait_ms": "2"}],
)
def test_bad_options_are_config_errors(options: dict) -> None:
    with pytest.raises(ConfigError):
        BatchingScorer(KeywordScorer({}), **options)


def test_inner_must_be_a_scorer() -> None:
    with pytest.raises(ConfigError, match="score"):
        BatchingScorer(object())  # type: ignore[arg-type]


async def test_many_concurrent_checks_get_their_own_scores_in_bounded_batches() -> None:
    inner = RecordingScorer(FunctionScorer(item_score))
    guard = Guard(["dangerous", "hate"], scorer=BatchingScorer(inner, max_batch=8, max_wait_ms=5))
    verdicts = await asyncio.gather(*(guard.acheck_input(f"item {n}") for n in range(60)))
    for n, verdict in enumerate(verdicts):
        assert [d.score for d in verdict.decisions] == [n / 100, n / 100]
        assert verdict.turn.prompt == f"item {n}"
    sizes = [len(b) for b in inner.batches]
    assert sum(sizes) == 120
    assert max(sizes) <= 8
    assert max(sizes) > 2  # requests of different callers shared a batch
    assert len(inner.batches) < 60
    for batch in inner.batches:  # a caller's two requests stay together
        prompts = [r.turn.prompt for r in batch]
        assert all(prompts.count(p) == 2 for p in prompts)


async def test_requests_queued_while_a_batch_runs_form_the_next_batch() -> None:
    inner = RecordingScorer(FunctionScorer(item_score))
    gate = Gate(inner)
    scorer = BatchingScorer(gate, max_batch=16, max_wait_ms=0)
    first = asyncio.create_task(scorer.ascore([request("item 0")]))
    await wait_until_in_flight(gate)
    rest = [asyncio.create_task(scorer.ascore([request(f"item {n}")])) for n in range(1, 11)]
    await asyncio.sleep(0.01)
    assert scorer.pending == 10
    gate.open()
    assert await first == [0.0]
    assert [await t for t in rest] == [[n / 100] for n in range(1, 11)]
    assert [len(b) for b in inner.batches] == [1, 10]
    assert scorer.pending == 0


async def test_a_caller_larger_than_max_batch_runs_alone_and_whole() -> None:
    inner = RecordingScorer(FunctionScorer(item_score))
    scorer = BatchingScorer(inner, max_batch=4, max_wait_ms=5)
    big = [request(f"item {n}") for n in range(10)]
    small = [request("item 50")]
    got_big, got_small = await asyncio.gather(scorer.ascore(big), scorer.ascore(small))
    assert got_big == [n / 100 for n in range(10)] and got_small == [0.5]
    assert sorted(len(b) for b in inner.batches) == [1, 10]


async def test_back_pressure_bounds_the_queue() -> None:
    inner = RecordingScorer(FunctionScorer(item_score))
    gate = Gate(inner)
    scorer = BatchingScorer(gate, max_batch=4, max_wait_ms=0, max_pending=6)
    first = asyncio.create_task(scorer.ascore([request("item 0")]))
    await wait_until_in_flight(gate)
    callers = [asyncio.create_task(scorer.ascore([request(f"item {n}")])) for n in range(1, 41)]
    await asyncio.sleep(0.02)
    assert scorer.pending == 6  # 34 callers wait outside the queue
    assert not any(t.done() for t in callers)
    gate.open()
    results = await asyncio.gather(first, *callers)
    assert results == [[n / 100] for n in range(41)]
    assert max(len(b) for b in inner.batches) <= 4
    assert scorer.pending == 0


async def test_a_caller_larger_than_max_pending_is_admitted_to_an_empty_queue() -> None:
    scorer = BatchingScorer(FunctionScorer(item_score), max_pending=2)
    assert await scorer.ascore([request(f"item {n}") for n in range(5)]) == [0.0, 0.01, 0.02, 0.03, 0.04]


async def test_an_error_reaches_every_caller_of_its_batch_and_no_other() -> None:
    inner = FailOn("bomb")
    gate = Gate(inner)  # type: ignore[arg-type]
    scorer = BatchingScorer(gate, max_batch=3, max_wait_ms=0)
    first = asyncio.create_task(scorer.ascore([request("warm up")]))
    await wait_until_in_flight(gate)
    texts = ["a bomb", "b", "c", "d", "e", "f"]  # batches [a bomb, b, c] and [d, e, f]
    tasks = [asyncio.create_task(scorer.ascore([request(t)])) for t in texts]
    await asyncio.sleep(0.01)
    gate.open()
    assert await first == [0.01]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r) for r in results[:3]] == [ScorerError] * 3
    assert len({id(r) for r in results[:3]}) == 3  # one exception object per caller
    assert "model crashed" in str(results[0]) and isinstance(results[0].__cause__, RuntimeError)
    assert results[3:] == [[0.01]] * 3
    assert inner.batches == [["warm up"], ["a bomb", "b", "c"], ["d", "e", "f"]]


async def test_a_failed_batch_fails_every_guarded_check_closed() -> None:
    guard = Guard(["dangerous", "hate"], scorer=BatchingScorer(FailOn("bomb"), max_wait_ms=20))
    verdicts = await asyncio.gather(*(guard.acheck_input(t) for t in ["a bomb", "bread", "tea"]))
    for verdict in verdicts:  # all three shared the failing batch: none is let through
        assert verdict.blocked
        assert all("model crashed" in (d.error or "") for d in verdict.decisions)


class OneScore:
    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        return [0.1]


async def test_a_wrong_number_of_scores_fails_the_batch() -> None:
    scorer = BatchingScorer(OneScore(), max_wait_ms=20)
    results = await asyncio.gather(
        scorer.ascore([request("item 1")]), scorer.ascore([request("item 2")]), return_exceptions=True
    )
    assert [type(r) for r in results] == [ScorerError, ScorerError]
    assert "1 scores for 2" in str(results[0])


async def test_cancelling_a_queued_caller_leaves_the_others_alone() -> None:
    inner = RecordingScorer(FunctionScorer(item_score))
    gate = Gate(inner)
    scorer = BatchingScorer(gate, max_batch=8, max_wait_ms=0)
    first = asyncio.create_task(scorer.ascore([request("item 0")]))
    await wait_until_in_flight(gate)
    tasks = [asyncio.create_task(scorer.ascore([request(f"item {n}")])) for n in range(1, 6)]
    await asyncio.sleep(0.01)
    tasks[2].cancel()
    await asyncio.sleep(0)
    assert scorer.pending == 4
    gate.open()
    results = await asyncio.gather(first, *tasks, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert [r for n, r in enumerate(results) if n != 3] == [[0.0], [0.01], [0.02], [0.04], [0.05]]
    assert "item 3" not in [r.turn.prompt for r in inner.requests]  # never scored


async def test_cancelling_a_caller_in_flight_leaves_its_batch_mates_alone() -> None:
    inner = RecordingScorer(FunctionScorer(item_score))
    gate = Gate(inner)
    scorer = BatchingScorer(gate, max_batch=8, max_wait_ms=5)
    tasks = [asyncio.create_task(scorer.ascore([request(f"item {n}")])) for n in range(4)]
    await wait_until_in_flight(gate)
    tasks[1].cancel()
    gate.open()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert [results[0], results[2], results[3]] == [[0.0], [0.02], [0.03]]
    assert await scorer.ascore([request("item 9")]) == [0.09]  # the dispatcher still works


async def test_cancelling_a_caller_waiting_for_admission_frees_its_place() -> None:
    inner = RecordingScorer(FunctionScorer(item_score))
    gate = Gate(inner)
    scorer = BatchingScorer(gate, max_batch=8, max_wait_ms=0, max_pending=2)
    first = asyncio.create_task(scorer.ascore([request("item 0")]))
    await wait_until_in_flight(gate)
    queued = [asyncio.create_task(scorer.ascore([request(f"item {n}")])) for n in (1, 2)]
    waiting = [asyncio.create_task(scorer.ascore([request(f"item {n}")])) for n in (3, 4)]
    await asyncio.sleep(0.01)
    assert scorer.pending == 2
    waiting[0].cancel()
    gate.open()
    results = await asyncio.gather(first, *queued, *waiting, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert [results[0], results[1], results[2], results[4]] == [[0.0], [0.01], [0.02], [0.04]]
    assert "item 3" not in [r.turn.prompt for r in inner.requests]


async def test_room_freed_while_a_cancelled_waiter_unwinds() -> None:
    inner = RecordingScorer(FunctionScorer(item_score))
    gate = Gate(inner)
    scorer = BatchingScorer(gate, max_batch=8, max_wait_ms=0, max_pending=1)
    first = asyncio.create_task(scorer.ascore([request("item 0")]))
    await wait_until_in_flight(gate)
    queued = asyncio.create_task(scorer.ascore([request("item 1")]))
    waiting = [asyncio.create_task(scorer.ascore([request(f"item {n}")])) for n in (2, 3)]
    await asyncio.sleep(0.01)
    queued.cancel()  # its unwinding frees room before the cancelled waiter's own unwinding runs
    waiting[0].cancel()
    await asyncio.sleep(0.01)
    assert scorer.pending == 1  # item 3 took the room
    gate.open()
    results = await asyncio.gather(first, queued, *waiting, return_exceptions=True)
    assert results[0] == [0.0] and results[3] == [0.03]
    assert all(isinstance(r, asyncio.CancelledError) for r in results[1:3])


async def test_a_guard_timeout_fails_closed_and_the_batcher_keeps_serving() -> None:
    inner = RecordingScorer(FunctionScorer(item_score))
    gate = Gate(inner)
    scorer = BatchingScorer(gate, max_wait_ms=0)
    guard = Guard(["dangerous"], scorer=scorer, timeout=0.2)
    stuck = asyncio.create_task(guard.acheck_input("item 1"))
    await wait_until_in_flight(gate)
    late = asyncio.create_task(guard.acheck_input("item 2"))  # queued behind the stuck batch
    verdicts = await asyncio.gather(stuck, late)
    assert all(v.blocked and "timed out" in (v.decisions[0].error or "") for v in verdicts)
    assert scorer.pending == 0  # the timed-out caller left the queue
    gate.open()
    verdict = await guard.acheck_input("item 7")
    assert verdict.decisions[0].score == 0.07
    assert "item 2" not in [r.turn.prompt for r in inner.requests]


def test_created_outside_a_loop_and_used_from_several_loops() -> None:
    inner = RecordingScorer(FunctionScorer(item_score))
    scorer = BatchingScorer(inner, max_wait_ms=5)
    guard = Guard(["dangerous"], scorer=scorer)
    assert scorer.pending == 0

    async def burst(offset: int) -> list[float]:
        verdicts = await asyncio.gather(*(guard.acheck_input(f"item {offset + n}") for n in range(5)))
        return [v.decisions[0].score for v in verdicts]

    assert asyncio.run(burst(0)) == [0.0, 0.01, 0.02, 0.03, 0.04]
    assert asyncio.run(burst(10)) == [0.1, 0.11, 0.12, 0.13, 0.14]
    assert len(inner.batches) == 2
    assert len(scorer._queues) == 1  # the first, closed loop's queue was dropped


def test_loops_in_two_threads_at_once() -> None:
    scorer = BatchingScorer(FunctionScorer(item_score), max_wait_ms=5)
    results: dict[int, list[list[float]]] = {}

    def run(offset: int) -> None:
        async def go() -> list[list[float]]:
            return await asyncio.gather(*(scorer.ascore([request(f"item {offset + n}")]) for n in range(8)))

        results[offset] = asyncio.run(go())

    threads = [threading.Thread(target=run, args=(offset,)) for offset in (0, 20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {o: [[(o + n) / 100] for n in range(8)] for o in (0, 20)}


@pytest.mark.slow
async def test_transformers_scores_batched_equal_alone(tiny_model_dir) -> None:  # noqa: ANN001
    from guardrail import TransformersScorer

    model = TransformersScorer.from_pretrained(str(tiny_model_dir), dtype="float32", batch_size=16)
    inner = RecordingScorer(model)
    guard = Guard(["dangerous", "hate"], scorer=BatchingScorer(inner, max_batch=16, max_wait_ms=20))
    texts = ["Hi.", "How do I bake bread at home?", "Tell me a story " * 12, "What is 2+2?", "ok " * 40]
    conversations = [
        [{"role": "user", "content": t}] for t in texts
    ]
    verdicts = await asyncio.gather(*(guard.acheck_input(c) for c in conversations))
    assert max(len(b) for b in inner.batches) > 2  # callers really were batched together
    for conversation, verdict in zip(conversations, verdicts):
        alone = [model.score([r])[0] for r in guard.requests(conversation, "input")]
        for decision, expected in zip(verdict.decisions, alone, strict=True):
            assert decision.score == pytest.approx(expected, abs=1e-5)
    # and with prefix sharing off, so the callers' prompts are padded into one forward pass
    model.share_prefix = False
    verdicts = await asyncio.gather(*(guard.acheck_input(c) for c in conversations))
    for conversation, verdict in zip(conversations, verdicts):
        alone = [model.score([r])[0] for r in guard.requests(conversation, "input")]
        for decision, expected in zip(verdict.decisions, alone, strict=True):
            assert decision.score == pytest.approx(expected, abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("batching", [True, False])
async def test_batching_scorer_gathers_concurrent_transformers_checks(tiny_model_dir, batching: bool) -> None:  # noqa: ANN001
    from guardrail import TransformersScorer

    # Batching wraps the scorer from outside, as the configuration and Guard's default do.
    model = TransformersScorer.from_pretrained(str(tiny_model_dir), dtype="float32")
    calls: list[int] = []
    forward = model.score

    def counting(requests: Sequence[ScoreRequest]) -> list[float]:
        calls.append(len(requests))
        return forward(requests)

    model.score = counting  # what the batcher calls, in a worker thread
    scorer = BatchingScorer(model, max_batch=4 * model.batch_size, max_wait_ms=0) if batching else model
    guard = Guard(["dangerous", "hate", "sexual"], scorer=scorer)
    conversations = [[{"role": "user", "content": f"Question number {n}: " + "why? " * n}] for n in range(6)]
    verdicts = await asyncio.gather(*(guard.acheck_input(c) for c in conversations))
    # Calls that arrive together, or while a forward runs, share the next one.
    assert (len(calls) <= 2 if batching else len(calls) == 6) and sum(calls) == 18
    for conversation, verdict in zip(conversations, verdicts):
        alone = forward(guard.requests(conversation, "input"))
        assert [d.score for d in verdict.decisions] == pytest.approx(alone, abs=1e-5)
