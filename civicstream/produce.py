"""Sending raw readings to Kafka, as fast as possible or paced by event time."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from kafka import KafkaProducer

from civicstream.progress import Progress
from civicstream.sources.base import SourceRecord
from kafkaconf import KafkaSecurity, resolve

__all__ = ["ProduceError", "ProduceStats", "produce"]


class ProduceError(RuntimeError):
    """Kafka refused some records (too large, not authorised, timed out)."""


@dataclass(frozen=True)
class ProduceStats:
    records: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def produce(
    records: Iterable[SourceRecord],
    *,
    bootstrap: str,
    topic: str,
    speed: float = 0.0,
    rate: float = 0.0,
    progress: Progress | None = None,
    security: KafkaSecurity | None = None,
) -> ProduceStats:
    """Send `records` to `topic` (acks=all) and flush.

    `speed` > 0 paces by event time (60 = one event-hour per wall minute); `rate` > 0
    caps records per second; both 0 sends as fast as the broker takes them.
    """
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
        **resolve(security).kafka_python(),
    )
    started = time.monotonic()
    first_ts: int | None = None
    sent = 0
    failures: list[BaseException] = []
    try:
        for record in records:
            if speed > 0 and record.ts_ms:
                if first_ts is None:
                    first_ts = record.ts_ms
                due = started + (record.ts_ms - first_ts) / 1000 / speed
                _sleep_until(due)
            elif rate > 0:
                _sleep_until(started + sent / rate)
            future = producer.send(topic, key=record.key, value=record.value)
            future.add_errback(failures.append)
            sent += 1
            if progress is not None:
                progress.update(1, record.ts_ms or None)
        producer.flush()
    finally:
        producer.close()
    if failures:
        msg = f"{len(failures)} of {sent} records were not accepted by Kafka; first: {failures[0]}"
        raise ProduceError(msg)
    return ProduceStats(sent, time.monotonic() - started)


def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)
