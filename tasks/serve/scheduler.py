"""Generation off the event loop: one worker thread decodes the requests a bounded FIFO queue feeds it.

The event loop only parses requests and moves text: `submit` queues a `Job` (or raises `QueueFull`, which the
server turns into a 429 with `Retry-After`), the worker thread takes jobs in arrival order (nothing overtakes, so
nothing starves) and sends each job's events back to its asyncio queue through `call_soon_threadsafe`.

Continuous batching: the worker keeps up to `max_batch` answers in flight in one slot decoder, run by the one decode
loop (`models.decoding.decoders.decode`, the scheduler being its `Streams`) — for the archs that declare batched
decoding (gpt, gpt2: KV cache; rnn: recurrent state) every step is one forward pass for all of them; a request joins as
soon as a slot is free and leaves when its answer ends. gcnn (and `max_batch=1`) is the same path with one slot: one
request at a time. A cancelled job (its client went away) leaves the queue at once, or stops at its next token when
already running.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.inference.generate import Delta

log = logging.getLogger("lmforge.serve")
# ("delta", text) | ("done", (finish_reason, prompt_tokens, completion_tokens)) | ("error", exception)
Event = tuple[str, Any]


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"queue full; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(eq=False)
class Job:
    """One request: its `models.inference.generate.Sequence`, and `output(delta)` turning engine deltas into events (the
    server filters text there); the events arrive in `events` on the loop."""

    sequence: Any
    output: Callable[[Delta], list[Event]]
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    started: float = 0.0


@dataclass
class Stats:
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    rejected: int = 0
    peak_batch: int = 0  # most answers decoded together so far
    seconds_per_job: float = 1.0  # moving average, for Retry-After


class Scheduler:
    def __init__(self, engine: Any, max_waiting: int, max_batch: int = 1) -> None:
        """`max_waiting` requests may wait behind the `max_batch` running ones."""
        from models.decoding.decoders import batchable

        self.engine, self.max_waiting = engine, max_waiting
        self.max_batch = max_batch if batchable(engine.model) else 1
        self.waiting: deque[Job] = deque()
        self.running: dict[int, Job] = {}
        self.stats = Stats()
        self.work = threading.Event()
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.thread = threading.Thread(target=self.run, name="lmforge-generate", daemon=True)
        self.thread.start()

    async def stop(self) -> None:
        self.stopping = True
        for job in [*self.waiting, *self.running.values()]:
            self.cancel(job)
        self.work.set()
        if self.thread is not None:
            await asyncio.to_thread(self.thread.join, 30)

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead drained at the recent pace."""
        return max(1, math.ceil(self.stats.seconds_per_job * (len(self.waiting) + 1) / self.max_batch))

    def submit(self, job: Job) -> None:
        if len(self.waiting) >= self.max_waiting + max(0, self.max_batch - len(self.running)):
            self.stats.rejected += 1
            raise QueueFull(self.retry_after())
        self.waiting.append(job)
        self.work.set()

    def cancel(self, job: Job) -> None:
        """Stop `job`: drop it from the queue, or make its running generation stop at the next token."""
        if job.cancelled.is_set():
            return
        job.cancelled.set()
        try:
            self.waiting.remove(job)
            self.stats.cancelled += 1
        except ValueError:  # running or finished: the worker counts it
            pass

    # --- the worker thread ---

    def send(self, job: Job, events: list[Event]) -> None:
        for kind, value in events:
            if kind == "done":
                if value[0] == "cancelled":
                    self.stats.cancelled += 1
                else:
                    self.stats.completed += 1
                elapsed = time.monotonic() - job.started
                self.stats.seconds_per_job = 0.8 * self.stats.seconds_per_job + 0.2 * elapsed
            self.loop.call_soon_threadsafe(job.events.put_nowait, (kind, value))

    def fail(self, job: Job, err: Exception) -> None:
        log.error("generation failed", exc_info=err)
        self.stats.failed += 1
        self.loop.call_soon_threadsafe(job.events.put_nowait, ("error", err))

    def next_job(self) -> Job | None:
        while self.waiting:
            try:
                job = self.waiting.popleft()
            except IndexError:  # the loop removed the last one (cancelled) meanwhile
                return None
            if not job.cancelled.is_set():
                job.started = time.monotonic()
                return job
        return None

    def run(self) -> None:
        while not self.stopping:
            if not self.waiting:
                self.work.wait(timeout=1.0)
            self.work.clear()
            try:
                self.run_batched()
            except Exception as err:  # the model failed: every answer in flight gets the error, the server lives on
                for job in self.running.values():
                    self.fail(job, err)
                self.running.clear()

    def run_batched(self) -> None:
        """Decode until no job runs and none waits: `max_batch` slots (one for an arch that decodes one sequence
        at a time), filled in arrival order."""
        from models.decoding.decoders import decode, decoder_for

        decoder = decoder_for(self.engine.model, self.engine.context, self.max_batch)
        for _ in decode(decoder, self):
            pass

    # --- the decode loop's streams (models.decoding.decoders.Streams): the running jobs, one per decoder slot ---

    def join(self, slot: int) -> list[int] | None:
        """The next job in arrival order takes the free `slot`; None when none waits (or the server stops)."""
        job = None if self.stopping else self.next_job()
        if job is None:
            return None
        self.running[slot] = job
        self.stats.peak_batch = max(self.stats.peak_batch, len(self.running))
        return job.sequence.prompt

    def advance(self, logits: dict[int, Any]) -> dict[int, int | None]:
        tokens: dict[int, int | None] = {}
        for slot, row in logits.items():
            job = self.running[slot]
            try:
                for delta in job.sequence.advance(row, job.cancelled.is_set()):
                    self.send(job, job.output(delta))
                tokens[slot] = job.sequence.next_token
            except Exception as err:  # this answer's failure (its output filter): the others go on
                self.fail(job, err)
                tokens[slot] = None
            if tokens[slot] is None:  # leave: the slot is free for the next request
                del self.running[slot]
        return tokens

    def refit(self, slot: int) -> list[int]:
        return self.running[slot].sequence.refit()
