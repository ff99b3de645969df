"""Generation off the event loop: one worker thread runs the requests a bounded FIFO queue feeds it.

The event loop only parses requests and moves text: `submit` queues a `Job` (or raises `QueueFull`, which the
server turns into a 429 with `Retry-After`), a dispatcher task hands jobs to the worker thread in arrival order (no
starvation: nothing overtakes), and the worker sends events back to the job's asyncio queue through
`call_soon_threadsafe`. A cancelled job (its client went away) leaves the queue at once, or stops at the next token
when it is already running. One worker because the model's CPU threads (or the GPU) are the bottleneck anyway: two
generations at once would each run at half speed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("lmforge.serve")
# ("delta", text) | ("done", (finish_reason, prompt_tokens, completion_tokens)) | ("error", exception)
Event = tuple[str, Any]


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"queue full; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(eq=False)
class Job:
    """One request's generation: `work(cancelled)` yields events in the worker thread; they arrive in `events`."""

    work: Callable[[Callable[[], bool]], Iterator[Event]]
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass
class Stats:
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    rejected: int = 0
    seconds_per_job: float = 1.0  # moving average, for Retry-After


class Scheduler:
    def __init__(self, max_waiting: int) -> None:
        """`max_waiting` requests may wait behind the running one."""
        self.max_waiting = max_waiting
        self.waiting: deque[Job] = deque()
        self.running: Job | None = None
        self.stats = Stats()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmforge-generate")
        self.wakeup: asyncio.Event | None = None
        self.dispatcher: asyncio.Task | None = None

    async def start(self) -> None:
        self.wakeup = asyncio.Event()
        self.dispatcher = asyncio.create_task(self.dispatch(), name="lmforge-dispatch")

    async def stop(self) -> None:
        for job in [*self.waiting, *([self.running] if self.running else [])]:
            self.cancel(job)
        if self.dispatcher is not None:
            self.dispatcher.cancel()
        self.executor.shutdown(wait=True, cancel_futures=True)

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead drained at the recent pace."""
        return max(1, math.ceil(self.stats.seconds_per_job * (len(self.waiting) + 1)))

    def submit(self, job: Job) -> None:
        if len(self.waiting) + (self.running is not None) > self.max_waiting:
            self.stats.rejected += 1
            raise QueueFull(self.retry_after())
        self.waiting.append(job)
        self.wakeup.set()

    def cancel(self, job: Job) -> None:
        """Stop `job`: drop it from the queue, or make the running generation stop at its next token."""
        if job.cancelled.is_set():
            return
        job.cancelled.set()
        try:
            self.waiting.remove(job)
            self.stats.cancelled += 1
        except ValueError:  # running or finished: the worker counts it
            pass

    async def dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.waiting:
                self.wakeup.clear()
                await self.wakeup.wait()
            job = self.running = self.waiting.popleft()
            started = time.monotonic()
            try:
                await loop.run_in_executor(self.executor, self.execute, job, loop)
            finally:
                self.running = None
            self.stats.seconds_per_job = 0.8 * self.stats.seconds_per_job + 0.2 * (time.monotonic() - started)

    def execute(self, job: Job, loop: asyncio.AbstractEventLoop) -> None:
        """In the worker thread: run the job, forwarding its events to the loop; never raises."""

        def send(event: Event) -> None:
            loop.call_soon_threadsafe(job.events.put_nowait, event)

        try:
            for event in job.work(job.cancelled.is_set):
                if event[0] == "done":
                    if event[1][0] == "cancelled":
                        self.stats.cancelled += 1
                    else:
                        self.stats.completed += 1
                send(event)
        except Exception as err:  # a bug or a model failure: the request gets an error, the server lives on
            log.exception("generation failed")
            self.stats.failed += 1
            send(("error", err))
