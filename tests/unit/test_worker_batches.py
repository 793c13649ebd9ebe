"""The worker's batch plumbing shared by its agents (streams.app)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust

from streams.air_quality import Gap, Output, StateUpdate
from streams.app import ProgressLine, fetch_promptly, make_durable


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_printed_as_running_totals_every_ten_seconds(capsys) -> None:
    clock = Clock()
    line = ProgressLine("worker: {records:,} records, {hours:,} hours", clock=clock)
    line.add(records=1500, hours=2)
    clock.now = 9.9
    line.add(records=1, hours=0)
    assert capsys.readouterr().err == ""
    clock.now = 10.0
    line.add(records=1, hours=1)
    assert capsys.readouterr().err == "worker: 1,502 records, 3 hours\n"
    clock.now = 15.0
    line.add(records=5, hours=0)
    assert capsys.readouterr().err == ""


class Recorder:
    """The app's producer, store and rewinder, writing down what happened in which order."""

    def __init__(self) -> None:
        self.steps: list[Any] = []
        self.producer = SimpleNamespace(send=self.send, flush=self.flush)
        self.consumer = SimpleNamespace(ack=self.ack, _unacked_messages=set())

    def ack(self, message: Any) -> None:
        message.acked = True
        self.steps.append(("ack", message.partition, message.offset))

    async def send(self, topic: str, key: bytes, value: bytes, *_: Any) -> None:
        self.steps.append(("send", topic, key))

    async def flush(self) -> None:
        self.steps.append("flush")

    async def save(self, update: StateUpdate) -> None:
        self.steps.append(("save", update.station_id))

    async def handle(self, partition: int, gap: Gap) -> None:
        self.steps.append(("rewind", partition, gap.expected))


class Message:
    """A consumer message as Faust makes it: hashable by identity, with an acked flag."""

    def __init__(self, partition: int, offset: int) -> None:
        self.partition, self.offset, self.acked = partition, offset, False


def message(partition: int, offset: int) -> Message:
    return Message(partition, offset)


def test_outputs_are_durable_before_the_states_then_gaps_are_acted_on_then_acks() -> None:
    recorder = Recorder()
    messages = [message(0, 10), message(0, 12), message(1, 5)]
    result = SimpleNamespace(
        state_updates=[StateUpdate("station-1", 0, b"{}")],
        gaps={0: Gap(expected=11, first_seen=12)},
    )
    outputs = [Output("enriched", b"station-1", b"row"), Output("hourly", b"station-1", b"hour")]
    asyncio.run(make_durable(recorder, recorder, recorder, messages, outputs, result))  # type: ignore[arg-type]
    assert recorder.steps == [
        ("send", "enriched", b"station-1"),
        ("send", "hourly", b"station-1"),
        "flush",
        ("save", "station-1"),
        "flush",
        ("rewind", 0, 11),
        # the record above the gap is kept from Faust's acking; the others are acked
        ("ack", 0, 10),
        ("ack", 1, 5),
    ]
    assert all(m.acked for m in messages)  # the skipped one marked so it is never registered


def test_a_batch_without_outputs_still_saves_its_states_durably() -> None:
    recorder = Recorder()
    result = SimpleNamespace(state_updates=[StateUpdate("progress", 0, b"{}")], gaps={})
    asyncio.run(make_durable(recorder, recorder, recorder, [message(0, 1)], [], result))  # type: ignore[arg-type]
    assert recorder.steps == [("save", "progress"), "flush", ("ack", 0, 1)]


def test_the_worker_consumer_waits_at_most_100_ms_for_idle_partitions() -> None:
    """Faust creates it with 1.5 s, which held busy partitions' records behind a fetch of
    idle ones (1.3 s of the median latency at half the maximum rate)."""

    async def create() -> int:
        app = faust.App("fetch-test", broker="kafka://127.0.0.1:1", web_enabled=False)
        fetch_promptly(app)
        thread = app.consumer._thread
        consumer = thread._create_worker_consumer(thread.transport)  # not started
        try:
            return consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()

    assert asyncio.run(create()) == 100
