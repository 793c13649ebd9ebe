"""`civicstream tail`: read a topic as JSON lines, whatever its wire format."""

from __future__ import annotations

import base64
import json
import sys
from datetime import datetime
from typing import Any, TextIO

from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from kafkaconf import KafkaSecurity, resolve
from schemas import SchemaError, decode

__all__ = ["tail"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _decode(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return decode(value)
    except SchemaError:
        try:
            return json.loads(value)
        except ValueError:
            return value


def tail(
    bootstrap: str,
    topic: str,
    *,
    last: int,
    follow: bool,
    out: TextIO = sys.stdout,
    security: KafkaSecurity | None = None,
) -> int:
    """Print the last `last` records of each partition (and new ones with `follow`)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **resolve(security).kafka_python()
    )
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            print(f"civicstream tail: no topic {topic!r} at {bootstrap}", file=sys.stderr)
            return 2
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        starts = consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(starts[tp], ends[tp] - last))
        printed = 0
        while True:
            batches = consumer.poll(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    line = {
                        "partition": record.partition,
                        "offset": record.offset,
                        "key": _jsonable(record.key),
                        "value": _jsonable(_decode(record.value)),
                    }
                    out.write(json.dumps(line, ensure_ascii=False) + "\n")
                    printed += 1
            out.flush()
            caught_up = all(consumer.position(tp) >= ends[tp] for tp in tps)
            if caught_up and not follow:
                return 0
    except (KeyboardInterrupt, BrokenPipeError):  # Ctrl-C, or `| head` has read enough
        return 0
    finally:
        consumer.close()
