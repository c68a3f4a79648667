"""Dynamic batching for the reward server: sequences of concurrent requests are queued and coalesced into
token-budgeted batches, scored on worker threads, and each request gets its rewards back in its own order.

A batch is formed when a worker is free and either the queue holds `max_batch_tokens` padded tokens or the oldest
queued sequence has waited `max_wait_ms`. Sequences are taken first come, first served (no request starves) until
one more would push `n x padded width of the longest` past the budget (a longer sequence is a batch of its own),
and at most an even share of the queue per idle worker, so a lone large request is spread over all of them; the
score function sorts a batch by length itself. While every worker is busy the queue grows, so batches grow with
the load. Nothing here knows about HTTP or torch: `score` is any `list[item] -> list[float]`.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Generic, Sequence, TypeVar

from rewardkit.modeling.batching import padded_width

Item = TypeVar("Item")


class BatcherClosed(RuntimeError):
    """`submit` after `close` began: the server is shutting down and takes no new work."""


@dataclass(frozen=True)
class BatchStats:
    """What one forward did, reported to `on_batch` (the server's metrics)."""

    sequences: int
    requests: int
    padded_tokens: int
    seconds: float


@dataclass(eq=False)
class _Request(Generic[Item]):
    items: list[Item]
    lengths: list[int]
    future: asyncio.Future
    arrived: float
    rewards: list[float | None] = field(default_factory=list)
    cursor: int = 0  # items before it are in a batch already
    left: int = 0  # items not scored yet

    def __post_init__(self) -> None:
        self.rewards = [None] * len(self.items)
        self.left = len(self.items)


class DynamicBatcher(Generic[Item]):
    """Coalesce `submit` calls from one event loop into batches for `score`, run on `workers` threads.

        batcher = DynamicBatcher(score, max_batch_tokens=8192, max_wait_ms=5, workers=2)
        batcher.start()                       # inside the running loop
        rewards = await batcher.submit(ids)   # one float per item, in order
        await batcher.close()                 # scores what is queued, then stops

    `length(item)` is the token count the budget sees (default `len`); `thread_init` runs once in each worker
    thread (the server sets torch's intra-op threads there); `on_batch` is called on the loop after each batch.
    """

    def __init__(self, score: Callable[[list[Item]], Sequence[float]], *, max_batch_tokens: int,
                 max_wait_ms: float, workers: int = 1, length: Callable[[Item], int] = len,
                 thread_init: Callable[[], None] | None = None,
                 on_batch: Callable[[BatchStats], None] | None = None):
        if max_batch_tokens < 1 or max_wait_ms < 0 or workers < 1:
            raise ValueError(f"need max_batch_tokens >= 1, max_wait_ms >= 0, workers >= 1; got {max_batch_tokens}, "
                             f"{max_wait_ms}, {workers}")
        self.score, self.length, self.on_batch = score, length, on_batch
        self.max_batch_tokens, self.max_wait_s, self.workers = max_batch_tokens, max_wait_ms / 1000, workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="rewardkit-batch", initializer=thread_init)
        self._pending: deque[_Request] = deque()
        self.queued = 0  # sequences waiting for a batch (the queue-depth gauge)
        self._queued_width = 0  # padded width of the longest of them
        self._closing = False
        self._busy = 0  # batches running
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the batching task on the running event loop."""
        self._wake = asyncio.Event()
        self._free = asyncio.Semaphore(self.workers)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="rewardkit-batcher")

    async def submit(self, items: list[Item]) -> list[float]:
        """The rewards of `items`, in order, once every batch holding one of them has run; a failed batch raises
        its error in every request it held."""
        if self._closing or self._task is None or self._task.done():
            raise BatcherClosed("the server is shutting down" if self._closing else "batcher not running")
        if not items:
            return []
        loop = asyncio.get_running_loop()
        lengths = [self.length(item) for item in items]
        request = _Request(list(items), lengths, loop.create_future(), loop.time())
        self._pending.append(request)
        self.queued += len(items)
        self._queued_width = max(self._queued_width, padded_width(max(lengths)))
        self._wake.set()
        return await request.future

    async def close(self) -> None:
        """Refuse new work, score everything queued at once (no waiting out the deadline), wait for the running
        batches, stop the threads. Calling it again does nothing."""
        if self._closing:
            return
        self._closing = True
        if self._task is None:
            self._pool.shutdown()
            return
        self._wake.set()
        await self._task
        for _ in range(self.workers):  # every slot back: no batch is running
            await self._free.acquire()
        self._pool.shutdown()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._free.acquire()  # batch only when a worker can take it: meanwhile the queue grows
                batch = await self._next_batch(loop)
                if batch is None:
                    self._free.release()
                    return
                self._busy += 1
                items = [request.items[i] for request, i in batch]
                done = loop.run_in_executor(self._pool, self._forward, items)
                done.add_done_callback(lambda f, batch=batch: self._finish(batch, f))
        except BaseException as e:  # a bug here must not leave requests waiting forever
            self._fail_all(e if isinstance(e, Exception) else BatcherClosed("batcher stopped"))
            raise

    async def _next_batch(self, loop: asyncio.AbstractEventLoop) -> list[tuple[_Request, int]] | None:
        while not self._pending:
            if self._closing:
                return None
            self._wake.clear()
            await self._wake.wait()
        deadline = self._pending[0].arrived + self.max_wait_s
        while not self._closing and self.queued * self._queued_width < self.max_batch_tokens:
            timeout = deadline - loop.time()
            if timeout <= 0:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                break
        return self._take()

    def _take(self) -> list[tuple[_Request, int]]:
        """First come, first served, while (n + 1) x width stays within the budget and n within this worker's
        share of the queue (at least one item)."""
        share = -(-self.queued // (self.workers - self._busy))  # ceil over the idle workers, this one included
        batch, width = [], 0
        while self._pending and len(batch) < share:
            request = self._pending[0]
            grown = max(width, padded_width(request.lengths[request.cursor]))
            if batch and (len(batch) + 1) * grown > self.max_batch_tokens:
                break
            batch.append((request, request.cursor))
            width, request.cursor = grown, request.cursor + 1
            if request.cursor == len(request.items):
                self._pending.popleft()
        self.queued -= len(batch)
        self._queued_width = max((padded_width(max(r.lengths[r.cursor:])) for r in self._pending), default=0)
        return batch

    def _forward(self, items: list[Item]) -> tuple[list[float], float]:
        start = time.perf_counter()
        rewards = list(self.score(items))
        if len(rewards) != len(items):
            raise RuntimeError(f"score returned {len(rewards)} rewards for {len(items)} items")
        return rewards, time.perf_counter() - start

    def _finish(self, batch: list[tuple[_Request, int]], done: asyncio.Future) -> None:
        self._busy -= 1
        self._free.release()
        self._wake.set()  # a free worker: a waiting batch may go now
        error = done.exception()
        requests = list(dict.fromkeys(request for request, _ in batch))
        if error is not None:
            for request in requests:
                _resolve(request.future, error=error)
            return
        rewards, seconds = done.result()
        for (request, i), reward in zip(batch, rewards):
            request.rewards[i] = reward
            request.left -= 1
        for request in requests:
            if request.left == 0:
                _resolve(request.future, result=request.rewards)
        if self.on_batch is not None:
            width = max(padded_width(request.lengths[i]) for request, i in batch)
            self.on_batch(BatchStats(len(batch), len(requests), len(batch) * width, seconds))

    def _fail_all(self, error: Exception) -> None:
        for request in self._pending:
            _resolve(request.future, error=error)
        self._pending.clear()
        self.queued = 0


def _resolve(future: asyncio.Future, result: list | None = None, error: BaseException | None = None) -> None:
    """Set a request's outcome once (its first failed batch wins; a cancelled waiter is skipped)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
