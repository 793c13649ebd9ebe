"""The local broker is a real Kafka: admin, produce and consume with both client libraries."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

pytestmark = pytest.mark.integration

KEYS = [f"station-{n}" for n in range(12)]
PER_KEY = 5


def _create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="civic-test-admin")
    try:
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        deadline = time.monotonic() + 15
        while True:  # metadata propagates asynchronously after CreateTopics returns
            described = admin.describe_topics([name])
            if described and len(described[0]["partitions"]) == partitions:
                return
            assert time.monotonic() < deadline, f"topic {name} not visible: {described}"
            time.sleep(0.1)
    finally:
        admin.close()


def test_kafka_python_keyed_roundtrip(
    kafka_bootstrap: str, topic_prefix: Callable[[str], str]
) -> None:
    topic = topic_prefix("readings")
    _create_topic(kafka_bootstrap, topic, partitions=3)

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
    sent: dict[str, list[str]] = defaultdict(list)
    produced_partition: dict[str, set[int]] = defaultdict(set)
    try:
        for round_ in range(PER_KEY):
            for key in KEYS:
                value = f"{key}:{round_}"
                metadata = producer.send(topic, key=key.encode(), value=value.encode()).get(10)
                produced_partition[key].add(metadata.partition)
                sent[key].append(value)
        producer.flush()
    finally:
        producer.close()

    # The default partitioner hashes the key (murmur2): one partition per key, and with
    # 12 keys over 3 partitions more than one partition is used.
    assert all(len(parts) == 1 for parts in produced_partition.values()), produced_partition
    assert len({next(iter(parts)) for parts in produced_partition.values()}) > 1

    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=topic_prefix("group"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    received: dict[str, list[str]] = defaultdict(list)
    consumed_partition: dict[str, set[int]] = defaultdict(set)
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while sum(map(len, received.values())) < len(KEYS) * PER_KEY:
            assert time.monotonic() < deadline, f"only got {dict(received)}"
            for message in consumer.poll(timeout_ms=500).values():
                for record in message:
                    key = record.key.decode()
                    received[key].append(record.value.decode())
                    consumed_partition[key].add(record.partition)
        assignment = consumer.assignment()
        consumer.commit()
        committed = {tp.partition: consumer.committed(tp) for tp in assignment}
    finally:
        consumer.close()

    assert received == sent  # everything back, per key in production order
    assert consumed_partition == produced_partition
    assert assignment == {TopicPartition(topic, p) for p in range(3)}
    assert sum(committed.values()) == len(KEYS) * PER_KEY


def test_aiokafka_roundtrip(kafka_bootstrap: str, topic_prefix: Callable[[str], str]) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin import NewTopic as AIONewTopic

    topic = topic_prefix("incidents")
    values = [f"incident-{n}".encode() for n in range(20)]

    async def roundtrip() -> list[tuple[bytes | None, bytes | None, int]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([AIONewTopic(topic, num_partitions=2, replication_factor=1)])
        finally:
            await admin.close()

        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for n, value in enumerate(values):
                await producer.send_and_wait(topic, value, key=f"k{n % 4}".encode())
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=topic_prefix("group"),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        got: list[tuple[bytes | None, bytes | None, int]] = []
        try:
            async with asyncio.timeout(30):
                async for record in consumer:
                    got.append((record.key, record.value, record.partition))
                    if len(got) == len(values):
                        break
            await consumer.commit()
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(roundtrip())
    assert sorted(value for _, value, _ in got) == sorted(values)
    by_key: dict[bytes | None, set[int]] = defaultdict(set)
    for key, _, partition in got:
        by_key[key].add(partition)
    assert len(by_key) == 4
    assert all(len(partitions) == 1 for partitions in by_key.values())
