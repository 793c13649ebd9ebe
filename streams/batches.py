"""A worker task's batch loop: the next batches are computed while the last are made durable.

Each batch goes through the commit order of streams.app (outputs durable, then states,
then acks). Those steps wait on the broker; the pipeline step is pure CPU. Done one after
the other, the worker idled through every flush: `make bench` saw it 30 % of the time
with batches waiting. So, while records are waiting:

* the steps of the next batches run while the last are made durable. They must read the
  states those left, which reach the table only once their outputs are durable:
  `PendingStates` shows them first;
* commits go one at a time, in order: the batches computed while one is in flight are
  made durable together next (a group commit), so a state is never durable ahead of its
  own outputs or of an earlier batch's, and a commit takes as many batches as the broker's
  round trips let pile up;
* everything runs on the event loop, one thread. A step is a generator that pauses every
  slice of its work (streams.app: 250 records, about 15 ms), and the loop then takes a few
  turns (`loop_turn`): the commit in flight moves on (sends, flush replies, acks) and
  fetched records land. A step thread did the same with the GIL handing over between the
  step and the loop; that handing over cost about 10 % more CPU per reading, and idle
  time, than these pauses (`make bench`, 90 days of Beijing: 9,886 against 10,829/s).

A batch that found a gap is made durable before the next is computed (its rewind must be
seen first), and so are the batches computed while nothing more waits (latency first) or
more than `AHEAD_BATCHES` full batches ahead of durability. Without `overlap`, each batch
is durable before the next is computed, as the neighbour and incident tasks run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from streams.air_quality import Output, StateStore

__all__ = [
    "Done",
    "Durable",
    "PendingStates",
    "Step",
    "run_batches",
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


Step = Callable[[Sequence[Any], StateStore], Generator[None, None, tuple[Any, Sequence[Output]]]]
"""Consumed messages and the states to read → a generator that yields between slices of
the work (the loop takes its turn there) and returns (the pipeline's result, outputs in
produce order). The result has `state_updates` and `gaps`."""
Durable = Callable[[Sequence[Any], Sequence[Output], Any], Awaitable[float]]
"""Makes batches durable in the commit order (streams.app.make_durable): their messages,
their outputs in produce order and a result with their `state_updates` and `gaps`;
returns the monotonic time the outputs were durable."""
Done = Callable[[Sequence[Any], Any, float, float], None]
"""After a batch is durable: (messages, result, durable_at, seconds from the start of its
step until it was durable)."""

AHEAD_BATCHES = 2
"""Full batches computed ahead of durability at most (their records are unacked, and a
rebalance waits for them): past that the loop waits for the commits. Two kept the rate
of four (90 days of Beijing: 9,557-9,994 against 9,547-10,014/s); fewer ahead, shorter
waits at half that rate (event-to-store p99 0.50 s with one, 0.64 s with four)."""


class Batches(Protocol):
    batch_max: int

    def __len__(self) -> int: ...

    def batches(self) -> AsyncIterator[list[Any]]: ...


@dataclass(slots=True)
class Computed:
    """A batch whose step has run, waiting to be made durable."""

    messages: Sequence[Any]
    result: Any
    outputs: Sequence[Output]
    started: float


@dataclass(slots=True)
class Group:
    """Computed batches made durable together, in their order: what `Durable` takes as
    the result (the state updates of all, in order; the gaps of the last, the only one
    that can have any: a batch with a gap closes its group)."""

    state_updates: list[Any]
    gaps: dict[int, Any]


LOOP_TURNS = 8
"""Turns of the event loop between two slices of a step: each runs what became ready
(a reply, the commit's next await, a fetch); idle turns cost a few µs."""


async def loop_turn() -> None:
    """Let the event loop run what is ready (replies that arrived, the next steps of a
    commit in flight, fetched records) before the step goes on."""
    for _ in range(LOOP_TURNS):
        await asyncio.sleep(0)


async def run_batches(
    intake: Batches,
    states: StateStore,
    step: Step,
    durable: Durable,
    done: Done,
    *,
    key_of: Callable[[Any], str],
    overlap: bool,
) -> None:
    """Take `intake`'s batches, compute each with `step`, make them `durable` in order,
    then call `done` for each; see the module docstring. Without `overlap` each batch is
    durable before the next is computed."""
    pending = PendingStates(states, key_of)
    group: list[Computed] = []
    undurable = 0  # records of the batches computed and not durable yet
    committing: asyncio.Future[None] | None = None
    ahead_max = AHEAD_BATCHES * intake.batch_max

    async def commits() -> None:
        """Make the group durable, then the one computed meanwhile, until none is left:
        it never waits for the loop to hand it over (at a rebalance no batch comes, and
        Faust waits for every taken record to be acked)."""
        nonlocal group, undurable
        while group:
            batches, group = group, []
            messages = [message for batch in batches for message in batch.messages]
            outputs = [output for batch in batches for output in batch.outputs]
            updates = [update for batch in batches for update in batch.result.state_updates]
            gaps = batches[-1].result.gaps
            durable_at = await durable(messages, outputs, Group(updates, gaps))
            finished = time.perf_counter()
            undurable -= len(messages)
            for batch in batches:
                pending.release(batch.result.state_updates)
                done(batch.messages, batch.result, durable_at, finished - batch.started)

    def commit() -> None:
        """Start committing the group, unless the commits in flight will take it."""
        nonlocal committing
        if committing is not None:
            if not committing.done():
                return
            committing.result()  # a commit that failed stops the loop here
        committing = asyncio.ensure_future(commits()) if group else None

    async def settle() -> None:
        """Wait until every computed batch is durable."""
        commit()
        while committing is not None:
            await committing
            commit()

    try:
        async for messages in intake.batches():
            started = time.perf_counter()
            work = step(messages, pending)
            while True:
                try:
                    next(work)
                except StopIteration as finished:
                    result, outputs = finished.value
                    break
                await loop_turn()
            pending.hold(result.state_updates)
            group.append(Computed(messages, result, outputs, started))
            undurable += len(messages)
            if not overlap or result.gaps or not len(intake) or undurable >= ahead_max:
                await settle()
            else:
                commit()
                await loop_turn()
    finally:
        if committing is not None and not committing.done():
            committing.cancel()
