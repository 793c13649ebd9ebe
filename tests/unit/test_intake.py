"""The worker's intake: source records out of Faust's fetches, in batches (streams.intake)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import faust
from faust.types import TP

from streams.air_quality import Gap
from streams.intake import Intake, ack_durable, divert_fetches


class Message:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.tp = TP(topic, partition)
        self.acked = False


class FakeConsumer:
    """The parts of Faust's consumer the intake uses, recording what was done."""

    def __init__(self, fetches: list[list[Message]]) -> None:
        self.fetches = fetches
        self._read_offset: dict[TP, int | None] = defaultdict(lambda: None)
        self.suspend_flow = asyncio.Event()
        self.gaps: list[tuple[TP, int, int]] = []
        self.acked: list[int] = []
        self._unacked_messages: set[Message] = set()
        self.app = self

    @property
    def topics(self) -> Any:
        return self

    def acks_enabled_for(self, topic: str) -> bool:
        return True

    async def getmany(self, timeout: float) -> Any:
        for message in self.fetches.pop(0):
            yield message.tp, message

    async def _add_gap(self, tp: TP, start: int, end: int) -> None:
        self.gaps.append((tp, start, end))

    def ack(self, message: Message) -> None:
        message.acked = True
        self.acked.append(message.offset)
        self._unacked_messages.discard(message)


class FakeApp:
    def __init__(self, consumer: FakeConsumer) -> None:
        self.consumer = consumer
        self.flow_control = faust.App("intake-test", web_enabled=False).flow_control
        self.flow_control.resume()


async def drain(consumer: FakeConsumer) -> list[tuple[TP, Message]]:
    return [item async for item in consumer.getmany(timeout=1.0)]


def test_source_records_go_to_their_intake_and_the_rest_stay_with_faust() -> None:
    async def scenario() -> None:
        raw = [Message("raw", 0, offset) for offset in (5, 6, 7)]
        other = Message("changelog", 0, 40)
        consumer = FakeConsumer([[raw[0], other, raw[1], raw[2]]])
        app = FakeApp(consumer)
        intake = Intake("raw", 2)
        divert_fetches(app, {"raw": intake})
        assert [message for _, message in await drain(consumer)] == [other]
        assert await intake.take() == raw[:2]  # oldest first, at most one batch
        assert await intake.take() == raw[2:]
        # Faust's bookkeeping, as its drain loop keeps it: read offset, tracked as unacked
        assert consumer._read_offset[TP("raw", 0)] == 7
        assert consumer._unacked_messages == set(raw)
        assert all(isinstance(m.time_in, float) for m in raw)  # arrival, for the latency

    asyncio.run(scenario())


def test_a_fetch_while_flow_is_stopped_is_dropped_unread() -> None:
    """A rebalance stops flow: the partitions' next owner reads those records instead."""

    async def scenario() -> None:
        consumer = FakeConsumer([[Message("raw", 0, 1)], [Message("raw", 0, 2)]])
        app = FakeApp(consumer)
        intake = Intake("raw", 10)
        divert_fetches(app, {"raw": intake})
        consumer.suspend_flow.set()
        await drain(consumer)
        assert len(intake) == 0
        assert consumer._read_offset[TP("raw", 0)] is None  # not read: fetched again
        consumer.suspend_flow.clear()
        await drain(consumer)
        assert [m.offset for m in await intake.take()] == [2]

    asyncio.run(scenario())


def test_a_fetch_while_tables_recover_waits_for_flow_to_resume_and_is_kept() -> None:
    """At start-up Faust's flow control stays suspended until the tables are recovered;
    dropping a fetch then lost a fresh partition's first records (nothing shows the gap)."""

    async def scenario() -> None:
        consumer = FakeConsumer([[Message("raw", 0, 0), Message("raw", 0, 1)]])
        app = FakeApp(consumer)
        app.flow_control.suspend()
        intake = Intake("raw", 10)
        divert_fetches(app, {"raw": intake})
        fetch = asyncio.ensure_future(drain(consumer))
        await asyncio.sleep(0.12)
        assert not fetch.done() and len(intake) == 0
        app.flow_control.resume()
        await asyncio.wait_for(fetch, 1.0)
        assert [m.offset for m in await intake.take()] == [0, 1]

    asyncio.run(scenario())


def test_a_rebalance_clears_what_no_batch_has_taken() -> None:
    async def scenario() -> None:
        consumer = FakeConsumer([[Message("raw", 0, 1), Message("raw", 0, 2)]])
        app = FakeApp(consumer)
        intake = Intake("raw", 10)
        divert_fetches(app, {"raw": intake})
        await drain(consumer)
        app.flow_control.clear()  # what Faust does when partitions are revoked
        assert len(intake) == 0

    asyncio.run(scenario())


def test_offsets_are_read_as_faust_reads_them_stale_dropped_holes_marked() -> None:
    async def scenario() -> None:
        fetches = [
            [Message("raw", 0, 10)],
            [Message("raw", 0, 9), Message("raw", 0, 14)],  # 9: before a seek; 11..13: holes
        ]
        consumer = FakeConsumer(fetches)
        app = FakeApp(consumer)
        intake = Intake("raw", 10)
        divert_fetches(app, {"raw": intake})
        await drain(consumer)
        await drain(consumer)
        assert [m.offset for m in await intake.take()] == [10, 14]
        assert consumer.gaps == [(TP("raw", 0), 11, 14)]

    asyncio.run(scenario())


def test_a_full_intake_stops_fetching_until_a_batch_is_taken() -> None:
    async def scenario() -> None:
        first = [Message("raw", 0, n) for n in range(4)]
        consumer = FakeConsumer([first, [Message("raw", 0, 4)]])
        app = FakeApp(consumer)
        intake = Intake("raw", 2)  # holds two batches of two
        divert_fetches(app, {"raw": intake})
        await drain(consumer)
        assert intake.full
        second = asyncio.ensure_future(drain(consumer))
        await asyncio.sleep(0.01)
        assert not second.done() and len(consumer.fetches) == 1  # not fetched
        assert await intake.take() == first[:2]
        assert not intake.full
        await asyncio.wait_for(second, 1.0)
        assert [m.offset for m in await intake.take()] == [2, 3]
        assert [m.offset for m in await intake.take()] == [4]

    asyncio.run(scenario())


def test_a_durable_batch_is_acked_except_the_records_skipped_above_a_gap() -> None:
    messages = [Message("raw", 0, 10), Message("raw", 0, 12), Message("raw", 1, 5)]
    consumer = FakeConsumer([])
    consumer._unacked_messages.update(messages)
    ack_durable(consumer, messages, {0: Gap(expected=11, first_seen=12)})
    assert consumer.acked == [10, 5]
    assert messages[1].acked  # so Faust never registers it as done
    assert not consumer._unacked_messages


def test_the_intake_plugs_into_fausts_own_consumer() -> None:
    """The attributes it uses exist on the consumer and flow control Faust builds."""

    async def build() -> None:
        app = faust.App("intake-real", broker="kafka://127.0.0.1:1", web_enabled=False)
        intake = Intake("raw", 10)
        divert_fetches(app, {"raw": intake})
        consumer = app.consumer
        assert consumer.getmany.__qualname__.startswith("divert_fetches")
        for name in ("_read_offset", "suspend_flow", "_add_gap", "ack"):
            assert hasattr(consumer, name), name
        assert hasattr(consumer, "_unacked_messages")
        intake.put([Message("raw", 0, 1)])
        app.flow_control.clear()
        assert len(intake) == 0

    asyncio.run(build())
