"""A worker task's batch loop: the next batch is computed while the last is made durable.

Each batch goes through the commit order of streams.app (outputs durable, then states,
then acks). Those steps wait on the broker; the pipeline step is pure CPU. Done one after
the other, the worker idled through every flush: `make bench` saw it 30 % of the time
with batches waiting. So, while records are waiting:

* the step of batch N+1 runs while batch N is made durable. It must read the states N
  left, which reach the table only once N's outputs are durable: `PendingStates` shows
  them first. Batches still become durable one at a time, in order, so a state is never
  durable ahead of its own outputs or of an earlier batch's;
* the step runs in a thread of its own (`step_executor`), so the event loop keeps
  sending, flushing and fetching meanwhile. The step holds the GIL while it runs, but the
  interpreter hands it to the loop's thread when that one wakes (every 5 ms at most:
  `sys.getswitchinterval`), which is all the sends and flushes need.

A batch that found a gap is made durable before the next is computed (its rewind must be
seen first), and an idle worker makes each batch durable at once (latency first). Without
an executor, batches run one after the other in the loop, as every task did before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from streams.air_quality import Output, StateStore

__all__ = [
    "Done",
    "Durable",
    "PendingStates",
    "Step",
    "run_batches",
    "step_executor",
]


_DELETED = object()


class PendingStates:
    """The state store as the next batch must see it: the newest write of each key by a
    batch not yet durable, else the store. Read by the step's thread, written by the
    event loop's: each is one dict operation, atomic under the GIL."""

    def __init__(self, store: StateStore, key_of: Callable[[Any], str]) -> None:
        self.store = store
        self.key_of = key_of
        self.pending: dict[str, Any] = {}

    def load(self, key: str) -> bytes | None:
        data = self.pending.get(key)
        if data is None:
            return self.store.load(key)
        return None if data is _DELETED else data

    def hold(self, updates: Sequence[Any]) -> None:
        """A computed batch's state updates (a None `data` deletes the key)."""
        for update in updates:
            self.pending[self.key_of(update)] = _DELETED if update.data is None else update.data

    def release(self, updates: Sequence[Any]) -> None:
        """Forget updates now in the store, unless a later batch wrote the key again."""
        for update in updates:
            key = self.key_of(update)
            held = self.pending.get(key)
            if held is update.data or (held is _DELETED and update.data is None):
                del self.pending[key]


Step = Callable[[Sequence[Any], StateStore], tuple[Any, Sequence[Output]]]
"""Consumed messages and the states to read → (the pipeline's result, outputs in produce
order). The result has `state_updates` and `gaps`."""
Durable = Callable[[Sequence[Any], Sequence[Output], Any], Awaitable[float]]
"""Makes one batch durable in the commit order (streams.app.make_durable); returns the
monotonic time its outputs were durable."""
Done = Callable[[Sequence[Any], Any, float, float], None]
"""After a batch is durable: (messages, result, durable_at, seconds from the start of its
step until it was durable)."""


class Batches(Protocol):
    def __len__(self) -> int: ...

    def batches(self) -> AsyncIterator[list[Any]]: ...


def step_executor() -> ThreadPoolExecutor:
    """The worker's step thread (one: steps never run side by side)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="civicstream-step")


async def run_batches(
    intake: Batches,
    states: StateStore,
    step: Step,
    durable: Durable,
    done: Done,
    *,
    key_of: Callable[[Any], str],
    executor: ThreadPoolExecutor | None,
) -> None:
    """Take `intake`'s batches, compute each with `step` in `executor`, make each
    `durable` in turn, then call `done`; see the module docstring. With no `executor` the
    step runs in the loop and each batch is durable before the next is computed."""
    loop = asyncio.get_running_loop()
    pending = PendingStates(states, key_of)
    previous: asyncio.Future[None] | None = None

    async def finish(messages: Sequence[Any], result: Any, outputs: Any, started: float) -> None:
        durable_at = await durable(messages, outputs, result)
        pending.release(result.state_updates)
        done(messages, result, durable_at, time.perf_counter() - started)

    try:
        async for messages in intake.batches():
            started = time.perf_counter()
            if executor is None:
                result, outputs = step(messages, pending)
            else:
                result, outputs = await loop.run_in_executor(executor, step, messages, pending)
            pending.hold(result.state_updates)
            if previous is not None:
                await previous
            previous = asyncio.ensure_future(finish(messages, result, outputs, started))
            if executor is None or result.gaps or not len(intake):
                await previous
                previous = None
    finally:
        if previous is not None and not previous.done():
            previous.cancel()
