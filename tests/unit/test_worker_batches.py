"""The worker's batch plumbing shared by its agents (streams.app)."""

from __future__ import annotations

import asyncio
import time
from operator import attrgetter
from types import SimpleNamespace
from typing import Any

import faust
import pytest

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


class Batch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    def append(self, *, key: bytes, value: bytes, timestamp: None) -> bool | None:
        self.records.append((key, value))
        return True


class Recorder:
    """The app's producer (Faust's, around an aiokafka client), store and rewinder,
    writing down what happened in which order. `refuse` names a topic whose records the
    broker refuses."""

    def __init__(self, refuse: str | None = None) -> None:
        self.steps: list[Any] = []
        self.refuse = refuse
        self.producer = SimpleNamespace(flush=self.flush, _ensure_producer=lambda: self)
        self.consumer = SimpleNamespace(ack=self.ack, _unacked_messages=set())
        self.client = SimpleNamespace(_wait_on_metadata=self.wait_on_metadata)
        self._metadata = SimpleNamespace(
            partitions_for_topic=lambda topic: {0, 1},
            available_partitions_for_topic=lambda topic: {0, 1},
        )

    def _partitioner(self, key: bytes | None, partitions: list[int], available: Any) -> int:
        return 0

    async def wait_on_metadata(self, topic: str) -> None:
        pass

    def create_batch(self) -> Batch:
        return Batch()

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future:
        self.steps.extend(("send", topic, key) for key, _ in batch.records)
        return self.delivered(topic)

    def delivered(self, topic: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if topic == self.refuse:
            future.set_exception(RuntimeError(f"{topic}: record too large"))
        else:
            future.set_result(None)
        return future

    def ack(self, message: Any) -> None:
        message.acked = True
        self.steps.append(("ack", message.partition, message.offset))

    async def flush(self) -> None:
        self.steps.append("flush")

    async def save(self, update: StateUpdate) -> asyncio.Future:
        self.steps.append(("save", update.station_id))
        return self.delivered("changelog")

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


def test_a_record_the_broker_refuses_stops_the_batch_before_its_states_are_saved() -> None:
    """Nothing lost: the states (and progress) would mark the records applied."""
    recorder = Recorder(refuse="hourly")
    result = SimpleNamespace(state_updates=[StateUpdate("station-1", 0, b"{}")], gaps={})
    outputs = [Output("enriched", b"station-1", b"row"), Output("hourly", b"station-1", b"h")]
    with pytest.raises(RuntimeError, match="record too large"):
        asyncio.run(make_durable(recorder, recorder, recorder, [message(0, 1)], outputs, result))  # type: ignore[arg-type]
    assert ("save", "station-1") not in recorder.steps
    assert not any(step[0] == "ack" for step in recorder.steps if isinstance(step, tuple))


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


class SmallBatch(Batch):
    def append(self, *, key: bytes, value: bytes, timestamp: None) -> bool | None:
        if len(self.records) == 2:
            return None  # full, as aiokafka says it
        return super().append(key=key, value=value, timestamp=timestamp)


def test_outputs_go_in_order_to_the_partition_aiokafka_would_pick_for_their_key() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    from streams.app import send_in_batches

    recorder = Recorder()
    recorder._partitioner = DefaultPartitioner()  # type: ignore[method-assign]
    recorder._metadata.partitions_for_topic = lambda topic: {0, 1, 2, 3}
    recorder.create_batch = SmallBatch  # type: ignore[method-assign]
    by_partition: dict[int, list[bytes]] = {}

    async def send_batch(batch: Batch, topic: str, *, partition: int) -> asyncio.Future:
        by_partition.setdefault(partition, []).extend(value for _, value in batch.records)
        return recorder.delivered(topic)

    recorder.send_batch = send_batch  # type: ignore[method-assign]
    keys = [f"station-{n % 5}".encode() for n in range(20)]
    outputs = [Output("enriched", key, str(n).encode()) for n, key in enumerate(keys)]
    sent = asyncio.run(send_in_batches(recorder.producer, outputs))
    assert len(sent) >= 10  # batches of two records
    for partition, values in by_partition.items():
        expected = [
            o.value for o in outputs if DefaultPartitioner()(o.key, [0, 1, 2, 3], []) == partition
        ]
        assert values == expected  # each partition's records, in their original order
    assert sum(len(v) for v in by_partition.values()) == 20


# -- streams.batches: the next batches computed while the last are made durable ---------


class Intake:
    """Batches of messages (here: batch numbers), `waiting` of them still queued after
    each is taken, as `len(intake)` tells the loop."""

    def __init__(
        self, batches: list[list[int]], *, waiting: bool = True, batch_max: int = 1
    ) -> None:
        self.queued = list(batches)
        self.waiting = waiting
        self.batch_max = batch_max  # here a batch holds one message: room to go ahead

    def __len__(self) -> int:
        return len(self.queued) if self.waiting else 0

    async def batches(self) -> Any:
        while self.queued:
            yield self.queued.pop(0)


class StallingIntake(Intake):
    """Records stop coming after its batches (a rebalance cleared what was fetched), though
    more were waiting when the last was taken."""

    def __len__(self) -> int:
        return 1  # the records a rebalance is about to clear

    async def batches(self) -> Any:
        while self.queued:
            yield self.queued.pop(0)
        await asyncio.Event().wait()  # nothing more, ever
        yield []


class Store:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def load(self, key: str) -> bytes | None:
        return self.data.get(key)


def run(
    intake: Intake,
    store: Store,
    *,
    gaps_in: frozenset[int] = frozenset(),
    overlap: bool = True,
    durable_until: Any = None,
) -> list[Any]:
    """Run the loop with a step that counts in state "count" in two slices (pausing in
    between) and a durable phase that waits (up to 0.3 s, as the broker's round trips
    would) until `durable_until(last batch of its group, what happened so far)` holds;
    returns what happened, in order."""
    from streams.batches import run_batches

    steps: list[Any] = []

    def step(messages: list[int], states: Any) -> Any:
        (batch,) = messages
        seen = states.load("count")
        steps.append(("step", batch, seen))
        yield  # the loop's turn between the two slices of the step
        steps.append(("slice 2", batch))
        count = int(seen or b"0") + 1
        result = SimpleNamespace(
            state_updates=[StateUpdate("count", 0, str(count).encode())],
            gaps={0: Gap(0, 1)} if batch in gaps_in else {},
        )
        return result, [Output("out", None, str(batch).encode())]

    async def durable(messages: list[int], outputs: list[Output], result: Any) -> float:
        last = messages[-1]
        steps.append(("durable from", messages[0], last))
        deadline = time.monotonic() + 0.3
        while durable_until is not None and not durable_until(last, steps):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0)  # one turn of the loop, like a reply being read
        for update in result.state_updates:
            store.data[update.station_id] = update.data
        steps.append(("durable to", messages[0], last))
        return 0.0

    def done(messages: list[int], result: Any, durable_at: float, took: float) -> None:
        steps.append(("done", messages[0]))

    loop = run_batches(
        intake,
        store,
        step,
        durable,  # type: ignore[arg-type]
        done,  # type: ignore[arg-type]
        key_of=attrgetter("station_id"),
        overlap=overlap,
    )
    if isinstance(intake, StallingIntake):  # the loop never ends: look after a while
        with pytest.raises(TimeoutError):
            asyncio.run(asyncio.wait_for(loop, 1.0))
    else:
        asyncio.run(loop)
    return steps


def started(batch: int, steps: list[Any]) -> bool:
    return any(s[:2] == ("step", batch) for s in steps)


def computed(batch: int, steps: list[Any]) -> bool:
    return ("slice 2", batch) in steps


def test_the_next_batches_are_computed_while_the_last_are_made_durable_together_in_order() -> None:
    steps = run(
        Intake([[1], [2], [3], [4]], batch_max=2),
        Store(),
        durable_until=lambda last, steps: computed(last + 2, steps) or last == 4,
    )
    kinds = [s[:2] for s in steps]
    # batches 2 and 3 are computed while batch 1 is made durable; then both in one commit
    assert kinds.index(("slice 2", 3)) < kinds.index(("durable to", 1))
    commits = [s[1:] for s in steps if s[0] == "durable from"]
    assert commits[0] == (1, 1)
    assert any(first < last for first, last in commits)  # a group commit
    covered = [n for first, last in commits for n in range(first, last + 1)]
    assert covered == [1, 2, 3, 4]  # one commit at a time, in order, each batch once
    assert [s for s in kinds if s[0] == "done"] == [("done", n) for n in (1, 2, 3, 4)]


def test_a_batch_reads_the_states_the_last_left_before_they_are_durable() -> None:
    store = Store()
    steps = run(
        Intake([[1], [2], [3]]),
        store,
        durable_until=lambda last, steps: started(last + 1, steps) or last == 3,
    )
    assert [s[2] for s in steps if s[0] == "step"] == [None, b"1", b"2"]
    assert steps.index(("step", 2, b"1")) < steps.index(("durable to", 1, 1))
    assert store.data == {"count": b"3"}


def test_the_commit_in_flight_moves_on_while_a_step_pauses_between_slices() -> None:
    """One thread: the loop runs the commit's next steps in the pauses of the step."""
    steps = run(
        Intake([[1], [2]]),
        Store(),
        durable_until=lambda last, steps: last == 2 or started(2, steps),
    )
    at = steps.index
    assert at(("step", 2, b"1")) < at(("durable to", 1, 1)) < at(("slice 2", 2))


def test_batches_computed_while_a_commit_is_in_flight_are_committed_with_no_batch_after() -> None:
    """At a rebalance no batch comes, and Faust waits for the taken records' acks."""
    steps = run(
        StallingIntake([[1], [2]], batch_max=2),
        Store(),
        durable_until=lambda last, steps: computed(last + 1, steps),
    )
    assert [s for s in steps if s[0] == "done"] == [("done", 1), ("done", 2)]


def test_a_batch_with_a_gap_is_durable_before_the_next_is_computed() -> None:
    """Its rewind must be seen by the next batch."""
    steps = run(
        Intake([[1], [2], [3]]),
        Store(),
        gaps_in=frozenset({2}),
        durable_until=lambda last, steps: started(last + 1, steps) or last == 3,
    )
    kinds = [s[:2] for s in steps]
    assert kinds.index(("done", 2)) < kinds.index(("step", 3))
    assert kinds.index(("step", 2)) < kinds.index(("durable to", 1))  # 1 had no gap


def test_at_most_two_full_batches_are_computed_ahead_of_durability() -> None:
    """Their records are unacked, and a rebalance waits for them."""
    steps = run(
        Intake([[n] for n in range(1, 6)]),
        Store(),
        durable_until=lambda last, steps: started(5, steps) or last == 5,
    )
    kinds = [s[:2] for s in steps]
    assert kinds.index(("step", 2)) < kinds.index(("durable to", 1)) < kinds.index(("step", 3))


@pytest.mark.parametrize(("waiting", "overlap"), [(False, True), (True, False)])
def test_an_idle_worker_or_a_task_without_overlap_makes_each_batch_durable_at_once(
    waiting: bool, overlap: bool
) -> None:
    """With nothing waiting there is nothing to overlap (latency first); without overlap
    the batches run one after the other, as the neighbour and incident tasks do."""
    steps = run(
        Intake([[1], [2]], waiting=waiting),
        Store(),
        overlap=overlap,
        durable_until=lambda last, steps: started(last + 1, steps),
    )
    assert [s[:2] for s in steps] == [
        ("step", 1),
        ("slice 2", 1),
        ("durable from", 1),
        ("durable to", 1),
        ("done", 1),
        ("step", 2),
        ("slice 2", 2),
        ("durable from", 2),
        ("durable to", 2),
        ("done", 2),
    ]


def test_pending_states_show_deletes_and_forget_only_what_was_not_written_again() -> None:
    from streams.batches import PendingStates

    store = Store()
    store.data = {"a": b"old", "b": b"kept"}
    pending = PendingStates(store, attrgetter("key"))
    first = [SimpleNamespace(key="a", data=None), SimpleNamespace(key="b", data=b"b1")]
    second = [SimpleNamespace(key="b", data=b"b2")]
    pending.hold(first)
    pending.hold(second)
    assert (pending.load("a"), pending.load("b"), pending.load("c")) == (None, b"b2", None)
    pending.release(first)  # "b" was written again by the second batch
    assert pending.load("a") == b"old"  # from the store again (the test's store kept it)
    assert pending.load("b") == b"b2"
    pending.release(second)
    assert pending.pending == {}
