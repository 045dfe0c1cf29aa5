"""One bounded queue in front of the model: every piece of model work (rerank and explain) waits here.

A single worker takes the first job, waits up to ``wait_ms`` for more, and runs them in a thread, jobs with
the same key (same kind of work, model and per-request options) as one batch. A job whose request went
away (client disconnected, timed out) before its turn is dropped, not computed. Only this worker touches
the models, so no lock is needed around them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from headrank.serve.metrics import Metrics
from headrank.serve.schemas import ServiceError

# run(key, payloads) -> one result or Exception per payload, in order
GroupRunner = Callable[[Hashable, Sequence[Any]], list]


@dataclass
class Job:
    key: Hashable
    payload: Any
    future: asyncio.Future
    enqueued: float


class BatchQueue:
    """Bounded queue (429 when full) with one worker that batches jobs arriving within a short window."""

    def __init__(self, run_group: GroupRunner, max_queue: int, max_batch: int, wait_ms: float,
                 metrics: Metrics) -> None:
        self._run_group = run_group
        self._queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=max_queue)
        self._max_batch, self._wait = max_batch, wait_ms / 1000
        self._metrics = metrics
        self._worker: asyncio.Task | None = None
        self.in_flight = 0
        self.seconds_per_batch: float | None = None  # moving average of one batch's model time

    def retry_after(self) -> int:
        """Seconds until a refused request would likely find room: the batches ahead of it (queued and running)
        times the recent model time per batch; 1 before anything has been timed."""
        if not self.seconds_per_batch:
            return 1
        batches = math.ceil((self._queue.qsize() + self.in_flight) / self._max_batch)
        return max(1, math.ceil(batches * self.seconds_per_batch))

    def qsize(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Let queued and running jobs finish, then stop the worker."""
        await self._queue.join()
        if self._worker:
            self._worker.cancel()

    def submit(self, key: Hashable, payload: Any) -> asyncio.Future:
        job = Job(key, payload, asyncio.get_running_loop().create_future(), time.perf_counter())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            wait = self.retry_after()
            raise ServiceError(429, f"the server is busy (queue full); retry in about {wait} s", "Overloaded",
                               {"Retry-After": str(wait)}) from None
        self._metrics.queue_size.set(self._queue.qsize())
        return job.future

    def _run_each(self, jobs: list[Job]) -> list:
        """Each group of equal keys in one call; a failed group is retried job by job, so one bad request
        cannot fail its neighbours."""
        results: list = [None] * len(jobs)
        groups: dict[Hashable, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job.key, []).append(i)
        for key, members in groups.items():
            try:
                answers = self._run_group(key, [jobs[i].payload for i in members])
            except Exception as err:  # noqa: BLE001 - retried one by one below
                answers = [err] if len(members) == 1 else [self._alone(jobs[i]) for i in members]
            for i, answer in zip(members, answers):
                results[i] = answer
        return results

    def _alone(self, job: Job):
        try:
            return self._run_group(job.key, [job.payload])[0]
        except Exception as err:  # noqa: BLE001 - handed to the waiting request
            return err

    async def _collect(self) -> list[Job]:
        jobs = [await self._queue.get()]
        deadline = time.perf_counter() + self._wait
        while len(jobs) < self._max_batch:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return jobs

    async def _run(self) -> None:
        while True:
            jobs = await self._collect()
            self._metrics.queue_size.set(self._queue.qsize())
            live = [j for j in jobs if not j.future.done()]  # a timed-out or disconnected client is dropped
            self._metrics.dropped.inc(len(jobs) - len(live))
            if live:
                await self._work(live)
            for _ in jobs:
                self._queue.task_done()

    async def _work(self, live: list[Job]) -> None:
        now = time.perf_counter()
        for job in live:
            self._metrics.queue_time.observe(now - job.enqueued)
        self.in_flight = len(live)
        results = await asyncio.to_thread(self._run_each, live)
        seconds = time.perf_counter() - now
        self._metrics.inference_time.observe(seconds)
        previous = self.seconds_per_batch
        self.seconds_per_batch = seconds if previous is None else 0.7 * previous + 0.3 * seconds
        self._metrics.batch_size.observe(len(live))
        self.in_flight = 0
        for job, result in zip(live, results):
            if job.future.done():
                continue
            if isinstance(result, Exception):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
