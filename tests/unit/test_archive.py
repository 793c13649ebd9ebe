"""The archive on disk: layout, exactly-once writing across crashes, reading back in order."""

from __future__ import annotations

import json
import os
from pathlib import Path

import fastavro
import pytest

from schemas.raw import RawReading, reading_to_avro
from sinks._archive_files import (
    ArchiveBusy,
    ArchivedRecord,
    ArchiveWriter,
    archive_files,
    event_time_ms,
    read_archive,
)

AQ = "civic.raw.air-quality"
INC = "civic.raw.incidents"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
NOW = 1_800_000_000_000  # when the broker received them (2027-01-15)


def reading(offset: int, ts_ms: int, station: str = "s1", partition: int = 0) -> ArchivedRecord:
    value = json.dumps({"station_id": station, "pollutant": "pm25", "value": 1, "ts": ts_ms})
    return ArchivedRecord(
        AQ, partition, offset, station.encode(), value.encode(), (), ts_ms, NOW + offset
    )


def garbage(offset: int, partition: int = 0) -> ArchivedRecord:
    return ArchivedRecord(AQ, partition, offset, b"s1", b"\xff not json", (), None, NOW)


def read_all(root: Path) -> list[dict]:
    rows = []
    for path in sorted(root.glob("topic=*/date=*/hour=*/*.avro")):
        with path.open("rb") as handle:
            rows.extend(fastavro.reader(handle))
    return rows


@pytest.fixture
def writer(tmp_path):
    archive = ArchiveWriter(tmp_path / "archive")
    yield archive
    archive.close()


# --- event time -----------------------------------------------------------------------------


def test_the_event_time_is_read_from_json_and_avro_values_whatever_else_is_wrong():
    iso = b'{"station_id": "s1", "unit": "furlongs", "ts": "2026-01-01T08:30:00+08:00"}'
    assert event_time_ms(AQ, iso) == T0 + HOUR // 2
    assert event_time_ms(AQ, json.dumps({"ts": T0}).encode()) == T0
    avro = reading_to_avro(RawReading("s1", None, "pm25", 1, "ug/m3", T0 + 5, None, None))
    assert event_time_ms(AQ, avro) == T0 + 5
    assert event_time_ms("city1." + INC, b'{"occurred_at": "2026-01-01T00:00Z"}') == T0


@pytest.mark.parametrize(
    "value",
    [
        b"\xff\xfe",
        b"{not json",
        b"[1, 2]",
        b'{"ts": "yesterday"}',
        b'{"ts": "2026-01-01T00:00"}',
        b'{"value": 3}',
        b"",
        None,
        b"\xc3\x01" + b"\x00" * 8,
    ],
)
def test_a_value_without_a_readable_event_time_has_none(value):
    assert event_time_ms(AQ, value) is None


def test_topics_without_a_known_event_time_field_have_none():
    assert event_time_ms("civic.enriched.air-quality", b'{"ts": 1}') is None


# --- layout ---------------------------------------------------------------------------------


def test_records_are_filed_by_topic_and_utc_event_hour_with_the_batch_offsets_in_the_name(
    writer,
):
    records = [reading(10, T0 + 5), reading(11, T0 + HOUR + 5), reading(12, T0 + 59 * 60_000)]
    stats = writer.recover([(AQ, 0)])
    assert stats == {(AQ, 0): None}
    written = writer.write(records)
    assert (written.written, written.files, written.next_offsets) == (3, 2, {(AQ, 0): 13})
    names = sorted(str(p.relative_to(writer.root)) for p in writer.root.glob("topic=*/*/*/*.avro"))
    name = "part-00000-00000000000000000010-00000000000000000012.avro"
    assert names == [
        f"topic={AQ}/date=2026-01-01/hour=00/{name}",
        f"topic={AQ}/date=2026-01-01/hour=01/{name}",
    ]
    first = read_all(writer.root)[0]
    assert first["key"] == b"s1" and first["value"] == records[0].value
    assert (first["topic"], first["partition"], first["offset"]) == (AQ, 0, 10)
    assert first["event_ts"].timestamp() * 1000 == T0 + 5
    assert first["broker_ts"].timestamp() * 1000 == NOW + 10
    assert writer.progress(AQ, 0) == 13


def test_records_without_event_time_are_filed_under_their_kafka_hour(writer):
    writer.recover([(AQ, 0)])
    stats = writer.write([garbage(0)])
    assert stats.unparsed == {AQ: 1}
    [path] = writer.root.glob("topic=*/*/*/*.avro")
    assert path.parent.name == "hour=08" and path.parent.parent.name == "date=2027-01-15"
    assert read_all(writer.root)[0]["event_ts"] is None


def test_headers_and_null_keys_and_values_are_kept(writer):
    writer.recover([(AQ, 0)])
    record = ArchivedRecord(AQ, 0, 0, None, None, (("trace", b"1"), ("empty", None)), T0, NOW)
    writer.write([record])
    [row] = read_all(writer.root)
    assert (row["key"], row["value"]) == (None, None)
    assert row["headers"] == [{"key": "trace", "value": b"1"}, {"key": "empty", "value": None}]


def test_files_count_their_records_per_key_in_their_header(writer):
    writer.recover([(AQ, 0)])
    writer.write([reading(0, T0, "a"), reading(1, T0, "b"), reading(2, T0, "a")])
    [file] = archive_files(writer.root, AQ)
    assert (file.count(), file.count(["a"]), file.count(["b", "c"])) == (3, 2, 1)


def test_one_process_writes_an_archive_at_a_time(writer):
    with pytest.raises(ArchiveBusy):
        ArchiveWriter(writer.root)


# --- exactly once ---------------------------------------------------------------------------


def test_records_delivered_again_below_the_progress_are_skipped(writer):
    writer.recover([(AQ, 0)])
    writer.write([reading(o, T0 + o) for o in range(5)])
    stats = writer.write([reading(o, T0 + o) for o in range(3, 8)])
    assert (stats.redelivered, stats.written) == (2, 3)
    assert [r["offset"] for r in read_all(writer.root)] == list(range(8))


def crash_at(monkeypatch, target: str, after: int = 0) -> None:
    """Make the progress write, or the rename after `after` renames, die like a kill."""
    import sinks._archive_files as files

    def die(*args):
        raise KeyboardInterrupt("crash")

    if target == "progress":
        monkeypatch.setattr(files.ArchiveWriter, "_save_progress", die)
        return
    done = []
    original = os.replace

    def replace(src, dst):
        if len(done) >= after:
            die()
        done.append(dst)
        original(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)


@pytest.mark.parametrize(
    "crash", ["between rename and progress", "between two renames", "before any rename"]
)
def test_a_crash_inside_a_batch_leaves_every_record_exactly_once_after_recovery(
    tmp_path, monkeypatch, crash
):
    root = tmp_path / "archive"
    records = [reading(o, T0 + (o % 4) * HOUR) for o in range(20)]
    first = ArchiveWriter(root)
    first.recover([(AQ, 0)])
    first.write(records[:6])
    with monkeypatch.context() as patch:
        if crash == "between rename and progress":
            crash_at(patch, "progress")
        else:
            crash_at(patch, "replace", after=1 if crash == "between two renames" else 0)
        with pytest.raises(KeyboardInterrupt):
            first.write(records[6:15])
    first.close()  # the process died: its lock goes with it
    left = sorted(p.name for p in root.rglob("part-*"))
    assert any("-00000000000000000006-" in name for name in left) == (crash != "before any rename")

    restarted = ArchiveWriter(root)
    assert restarted.recover([(AQ, 0)]) == {(AQ, 0): 6}
    restarted.write(records[6:11])  # re-delivered, in other batches than before
    restarted.write(records[11:])
    restarted.close()
    offsets = [r["offset"] for r in read_all(root)]
    assert sorted(offsets) == list(range(20))
    assert not list(root.rglob("*.tmp"))


def test_recovery_with_no_progress_removes_what_a_first_unfinished_batch_left(
    tmp_path, monkeypatch
):
    root = tmp_path / "archive"
    first = ArchiveWriter(root)
    first.recover([(AQ, 0), (AQ, 1)])
    first.write([reading(0, T0, partition=1)])
    with monkeypatch.context() as patch:
        crash_at(patch, "progress")
        with pytest.raises(KeyboardInterrupt):
            first.write([reading(0, T0), reading(1, T0, partition=0)])
    first.close()
    restarted = ArchiveWriter(root)
    assert restarted.recover([(AQ, 0), (AQ, 1)]) == {(AQ, 0): None, (AQ, 1): 1}
    assert [(r["partition"], r["offset"]) for r in read_all(root)] == [(1, 0)]
    restarted.close()


# --- reading back ---------------------------------------------------------------------------


def test_reading_back_gives_each_partition_in_offset_order_across_hours_and_batches(writer):
    writer.recover([(AQ, 0), (AQ, 1)])
    # a late reading (offset 3, hour 0) after hour-2 readings; two batches; two partitions
    writer.write([reading(0, T0), reading(1, T0 + 2 * HOUR), reading(2, T0 + 2 * HOUR + 1)])
    writer.write([reading(3, T0 + 5), garbage(4), reading(5, T0 + HOUR)])
    writer.write([reading(0, T0 + 3, "s2", partition=1)])
    streams = read_archive(archive_files(writer.root, AQ))
    assert list(streams) == [(AQ, 0), (AQ, 1)]
    assert [r.offset for r in streams[(AQ, 0)]] == [0, 1, 2, 3, 4, 5]
    assert [r.key for r in streams[(AQ, 1)]] == [b"s2"]


def test_reading_selects_by_event_time_and_key(writer):
    writer.recover([(AQ, 0)])
    writer.write(
        [
            reading(0, T0, "a"),
            reading(1, T0 + HOUR, "b"),
            reading(2, T0 + 2 * HOUR, "a"),
            reading(3, T0 + 2 * HOUR + 30 * 60_000, "a"),
        ]
    )
    files = archive_files(writer.root, AQ, T0 + HOUR, T0 + 2 * HOUR + 1)
    assert len(files) == 2  # the hours 01 and 02: the directory is the first filter
    streams = read_archive(files, since_ms=T0 + HOUR, until_ms=T0 + 2 * HOUR + 1, keys={b"a"})
    assert [r.offset for r in streams[(AQ, 0)]] == [2]


def test_a_batch_spread_over_more_hours_than_open_files_allowed_reads_back(writer):
    import resource

    writer.recover([(AQ, 0)])
    writer.write([reading(o, T0 + o * HOUR) for o in range(120)])  # one batch, 120 files
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        streams = read_archive(archive_files(writer.root, AQ))
        assert [r.offset for r in streams[(AQ, 0)]] == list(range(120))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_broker_down_at_the_periodic_topic_check_does_not_stop_the_archive_sink(
    tmp_path, monkeypatch
):
    """Found by the chaos run: a broker restart that fell on the topic check (every 30 s)
    raised out of the archive sink, which then exited. It must ride the restart out, as the
    sink and the worker do, keep its partitions and look again at the next check."""
    from kafka.errors import KafkaConnectionError

    from schemas import Topics
    from sinks import archive

    class Consumer:
        broker_up = True

        def __init__(self, **config):
            self.assigned: list = []

        def topics(self):
            if not Consumer.broker_up:
                raise KafkaConnectionError("111 ECONNREFUSED")
            return {Topics().raw_air_quality}

        def partitions_for_topic(self, topic):
            return {0}

        def assign(self, partitions):
            self.assigned = list(partitions)

        def seek_to_beginning(self, *partitions):
            pass

        def seek(self, partition, offset):
            pass

        def poll(self, timeout_ms):
            return {}

        def close(self, **options):
            pass

    monkeypatch.setattr(archive, "KafkaConsumer", Consumer)
    sink = archive.ArchiveSink("127.0.0.1:1", Topics(), tmp_path, topic_check_s=0, metrics=False)
    try:
        Consumer.broker_up = False
        assert sink.run_once(timeout_ms=0) == 0  # no exception: the check is skipped
        assert [tp.topic for tp in sink._consumer.assigned] == [Topics().raw_air_quality]
        Consumer.broker_up = True
        assert sink.run_once(timeout_ms=0) == 0
    finally:
        sink.close()
