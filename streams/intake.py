"""The worker's source records, taken from Faust's consumer one fetch at a time.

Faust hands every fetched record to its conductor on its own: per record its drain loop
races the delivery against a flow stop (two tasks and an `asyncio.wait`), the conductor
takes a lock, builds an event and queues it for a stream, and the stream takes it out
again. `make bench` measured that path at 118 µs of CPU per record (the Faust floor),
against 14 µs for a bare aiokafka loop: a third of the worker's time, for records the
worker only wants in batches.

So the worker takes its source topics' records out of each fetch (`Consumer.getmany`)
before Faust's drain loop sees them, and keeps Faust's bookkeeping as that loop does:

* read offsets and offset gaps move exactly as in Faust's drain loop;
* each record is tracked as unacked (and stamped with its arrival time, as Faust's
  monitor does), so a rebalance waits for its batch to finish (`Consumer.wait_empty`) and
  the watchdog sees it in flight;
* a fetch waits while the app's flow control is suspended (tables recovering); one that
  arrives while the consumer's flow is stopped (a rebalance) is dropped unread, and a
  rebalance clears what no batch has taken yet (`flow_control.clear`): the partitions'
  next owner reads those records from the committed offset;
* the worker acks each record once its batch is durable (`ack_durable`), and Faust
  commits the acked offsets as before.

Other topics (changelogs of standby tables, the leader topic) still go through Faust.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from streams.air_quality import Gap

__all__ = ["Intake", "ack_durable", "divert_fetches"]

FLOW_POLL_SECONDS = 0.05
"""How often a fetch waiting for the app's flow control to resume looks again."""

PENDING_BATCHES = 2
"""Batches an intake holds before the consumer stops fetching more (back-pressure): one
being taken and the next, so the batch loop never waits for a fetch while busy."""


class Intake:
    """One source topic's records: fetched, tracked, not yet taken by its batch loop."""

    def __init__(self, topic: str, batch_max: int) -> None:
        self.topic = topic
        self.batch_max = batch_max
        self.pending_max = PENDING_BATCHES * batch_max
        self._pending: deque[Any] = deque()
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def full(self) -> bool:
        """Fetching is paused until a batch is taken: no partition is read meanwhile."""
        return not self._room.is_set()

    def put(self, messages: Sequence[Any]) -> None:
        self._pending.extend(messages)
        self._arrived.set()
        if len(self._pending) >= self.pending_max:
            self._room.clear()

    def clear(self) -> None:
        """Drop what no batch has taken (Faust's flow control calls it at a rebalance)."""
        self._pending.clear()
        self._room.set()

    async def room(self) -> None:
        """Wait until the intake holds fewer than `pending_max` records."""
        await self._room.wait()

    async def take(self) -> list[Any]:
        """The oldest records, at most `batch_max`; waits for at least one.

        Whatever has arrived is taken at once: the batch grows with the load (the loop
        is busy while more arrive) and a record never waits for a batch to fill.
        """
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        pending = self._pending
        count = min(self.batch_max, len(pending))
        batch = [pending.popleft() for _ in range(count)]
        if len(pending) < self.pending_max:
            self._room.set()
        return batch

    async def batches(self) -> AsyncIterator[list[Any]]:
        while True:
            yield await self.take()


def divert_fetches(app: Any, intakes: Mapping[str, Intake]) -> None:
    """Route the records of the intakes' topics from every fetch of `app`'s consumer to
    their intake, in offset order per partition, with Faust's bookkeeping (above).
    `app` is the worker's Faust app (streams.app, the one module that imports Faust)."""
    consumer = app.consumer
    fetch = consumer.getmany
    read_offset = consumer._read_offset
    flow_control = app.flow_control
    for intake in intakes.values():
        flow_control.manage_queue(intake)  # type: ignore[arg-type]  # only .clear() is used

    async def deliverable() -> bool:
        """Whether fetched records may go to their intakes, as Faust's drain loop decides
        for its streams: while the app's flow control is suspended (tables recovering at
        start-up) they wait, and they are dropped only when the consumer's flow stops (a
        rebalance), for the partitions' next owner to read from the committed offset.
        Dropping them at start-up instead lost the first records of a fresh partition:
        with no progress yet, nothing shows they were skipped."""
        while not flow_control.is_active() and not consumer.suspend_flow.is_set():
            await asyncio.sleep(FLOW_POLL_SECONDS)
        return not consumer.suspend_flow.is_set()

    async def getmany(timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        for intake in intakes.values():
            await intake.room()
        diverted: dict[str, list[tuple[Any, Any]]] = {}
        others = []
        async for tp, message in fetch(timeout=timeout):
            if tp.topic in intakes:
                diverted.setdefault(tp.topic, []).append((tp, message))
            else:
                others.append((tp, message))
        if diverted and await deliverable():
            for topic, fetched in diverted.items():
                intakes[topic].put(await _admit(consumer, read_offset, fetched))
        for item in others:
            yield item

    consumer.getmany = getmany  # type: ignore[method-assign]


async def _admit(consumer: Any, read_offset: Any, fetched: list[tuple[Any, Any]]) -> list[Any]:
    """What Faust's drain loop does for each record before delivering it.

    A record is tracked as Faust's `track_message` tracks it, without the call to every
    sensor it makes (2.6 % of the worker's time): the worker reads only the arrival time
    Faust's monitor would stamp (`time_in`, the same monotonic clock).
    """
    acks_enabled = consumer.app.topics.acks_enabled_for
    unacked = consumer._unacked_messages
    arrived = time.monotonic()
    admitted = []
    for tp, message in fetched:
        offset = message.offset
        last_read = read_offset.get(tp)
        if last_read is not None and offset < last_read:
            continue  # fetched before a seek back, after it was read: Faust drops it too
        if last_read and offset - last_read > 1 and acks_enabled(tp.topic):
            await consumer._add_gap(tp, last_read + 1, offset)  # offsets without records
        read_offset[tp] = offset
        unacked.add(message)
        message.time_in = arrived
        admitted.append(message)
    return admitted


def ack_durable(consumer: Any, messages: Sequence[Any], gaps: Mapping[int, Gap]) -> None:
    """Ack a batch whose outputs and states are durable, so Faust commits its offsets.

    Records skipped above a gap were not applied: they are taken out of the acking (a
    message marked acked is never registered as done), so no commit passes them and
    whoever owns the partition next starts at the first one.
    """
    unacked = consumer._unacked_messages
    for message in messages:
        gap = gaps.get(message.partition)
        if gap is not None and message.offset >= gap.first_seen:
            message.acked = True
            unacked.discard(message)
        else:
            consumer.ack(message)
