"""rewardkit.serving.batcher in-process: coalescing, result order, the token budget, the wait deadline, errors reaching
every waiter, worker concurrency and shutdown. The score function is a stand-in (reward = the item's first id), so
every reward says which item it belongs to."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from rewardkit.modeling.batching import padded_width
from rewardkit.serving.batcher import BatcherClosed, BatchStats, DynamicBatcher


class Recorder:
    """A score function that records each batch and can sleep or fail."""

    def __init__(self, sleep: float = 0.0, fail_on: int | None = None):
        self.batches: list[list[list[int]]] = []
        self.sleep, self.fail_on = sleep, fail_on
        self.running = self.most_running = 0
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, items: list[list[int]]) -> list[float]:
        with self.lock:
            self.batches.append(items)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self.threads.add(threading.current_thread().name)
        try:
            time.sleep(self.sleep)
            if self.fail_on is not None and any(item[0] == self.fail_on for item in items):
                raise ValueError(f"item {self.fail_on} is poison")
            return [float(item[0]) for item in items]
        finally:
            with self.lock:
                self.running -= 1


def seq(first: int, length: int = 4) -> list[int]:
    return [first] + [0] * (length - 1)


def run(coro):
    return asyncio.run(coro)


async def started(score, **kwargs) -> DynamicBatcher:
    kwargs = {"max_batch_tokens": 4096, "max_wait_ms": 50, **kwargs}
    batcher = DynamicBatcher(score, **kwargs)
    batcher.start()
    return batcher


def test_concurrent_requests_share_one_batch_and_get_their_own_rewards_in_order():
    score, stats = Recorder(), []

    async def main():
        batcher = await started(score, on_batch=stats.append)
        requests = [[seq(10 * r + i) for i in range(r + 1)] for r in range(5)]  # 1..5 items each
        results = await asyncio.gather(*(batcher.submit(items) for items in requests))
        await batcher.close()
        return requests, results

    requests, results = run(main())
    assert results == [[float(item[0]) for item in items] for items in requests]
    assert len(score.batches) == 1 and len(score.batches[0]) == 15
    assert stats == [BatchStats(sequences=15, requests=5, padded_tokens=15 * 8, seconds=stats[0].seconds)]


def test_batches_stay_within_the_token_budget_and_a_long_sequence_goes_alone():
    score = Recorder()
    budget = 64

    async def main():
        batcher = await started(score, max_batch_tokens=budget, max_wait_ms=20)
        requests = [[seq(100 * r + i, length=3 + (i * 7) % 20) for i in range(9)] for r in range(4)]
        requests.append([seq(999, length=200)])  # wider than the whole budget
        results = await asyncio.gather(*(batcher.submit(items) for items in requests))
        await batcher.close()
        return requests, results

    requests, results = run(main())
    assert results == [[float(item[0]) for item in items] for items in requests]
    for batch in score.batches:
        assert len(batch) == 1 or len(batch) * max(padded_width(len(s)) for s in batch) <= budget
    assert [seq(999, length=200)] in score.batches
    assert sorted(item[0] for batch in score.batches for item in batch) == sorted(
        item[0] for items in requests for item in items)  # every item scored exactly once


def test_a_request_larger_than_the_budget_is_split_over_batches_and_reassembled_in_order():
    score = Recorder()

    async def main():
        batcher = await started(score, max_batch_tokens=32, max_wait_ms=0)  # 4 sequences of width 8 per batch
        result = await batcher.submit([seq(i) for i in range(10)])
        await batcher.close()
        return result

    assert run(main()) == [float(i) for i in range(10)]
    assert [len(b) for b in score.batches] == [4, 4, 2]


def test_a_lone_large_request_is_spread_evenly_over_idle_workers():
    score = Recorder()

    async def main():
        batcher = await started(score, max_wait_ms=0, workers=2)
        result = await batcher.submit([seq(i) for i in range(11)])
        await batcher.close()
        return result

    assert run(main()) == [float(i) for i in range(11)]
    assert sorted(len(b) for b in score.batches) == [5, 6]  # not 11 on one core and nothing on the other


def test_a_lone_request_waits_for_the_deadline_and_a_full_budget_does_not():
    async def latency(max_wait_ms: float, n_items: int, budget: int) -> float:
        batcher = await started(Recorder(), max_wait_ms=max_wait_ms, max_batch_tokens=budget)
        start = time.perf_counter()
        await batcher.submit([seq(i) for i in range(n_items)])
        elapsed = time.perf_counter() - start
        await batcher.close()
        return elapsed

    assert 1.0 <= run(latency(1000, 1, 4096)) < 4.0  # waited for company that never came
    assert run(latency(0, 1, 4096)) < 0.5
    assert run(latency(10_000, 8, 64)) < 2.5  # 8 x 8 padded tokens fill the budget: no waiting out 10 s


def test_a_failed_batch_raises_in_every_request_it_held_and_the_batcher_carries_on():
    score = Recorder(fail_on=13)

    async def main():
        batcher = await started(score)
        outcomes = await asyncio.gather(batcher.submit([seq(11)]), batcher.submit([seq(12), seq(13)]),
                                        batcher.submit([seq(14)]), return_exceptions=True)
        after = await batcher.submit([seq(15)])
        await batcher.close()
        return outcomes, after

    outcomes, after = run(main())
    assert len(score.batches[0]) == 4  # all three requests were in the poisoned batch
    assert all(isinstance(o, ValueError) and "poison" in str(o) for o in outcomes)
    assert after == [15.0]


def test_a_score_function_returning_the_wrong_count_is_an_error_not_a_silent_misalignment():
    async def main():
        batcher = await started(lambda items: [0.0], max_wait_ms=0)
        with pytest.raises(RuntimeError, match="1 rewards for 2 items"):
            await batcher.submit([seq(1), seq(2)])
        await batcher.close()

    run(main())


def test_workers_run_batches_at_the_same_time_each_initialised_once():
    for workers in (1, 2):
        score, initialised = Recorder(sleep=0.2), []

        async def main():
            batcher = await started(score, max_batch_tokens=8, max_wait_ms=0, workers=workers,
                                    thread_init=lambda: initialised.append(threading.current_thread().name))
            await asyncio.gather(*(batcher.submit([seq(i)]) for i in range(4)))
            await batcher.close()

        run(main())
        assert score.most_running == workers
        assert len(initialised) == len(set(initialised)) == len(score.threads) == workers


def test_close_scores_queued_work_at_once_then_refuses_new_requests():
    score = Recorder(sleep=0.1)

    async def main():
        batcher = await started(score, max_wait_ms=10_000)
        waiting = asyncio.gather(*(batcher.submit([seq(i), seq(i + 100)]) for i in range(3)))
        await asyncio.sleep(0.05)
        assert batcher.queued == 6  # still inside the 10 s window
        start = time.perf_counter()
        await batcher.close()
        closed_in = time.perf_counter() - start
        results = await asyncio.wait_for(waiting, 0.5)  # close returned after the batch ran: rewards are there
        with pytest.raises(BatcherClosed, match="shutting down"):
            await batcher.submit([seq(1)])
        return results, closed_in

    results, closed_in = run(main())
    assert results == [[float(i), float(i + 100)] for i in range(3)]
    assert closed_in < 2.0


def test_empty_requests_and_bad_settings():
    async def main():
        batcher = await started(Recorder())
        assert await batcher.submit([]) == []
        await batcher.close()
        await batcher.close()  # a second close is a no-op, not a hang

    run(main())
    with pytest.raises(BatcherClosed, match="not running"):
        run(DynamicBatcher(Recorder(), max_batch_tokens=8, max_wait_ms=1).submit([seq(1)]))
    with pytest.raises(ValueError, match="max_batch_tokens >= 1"):
        DynamicBatcher(Recorder(), max_batch_tokens=0, max_wait_ms=1)
