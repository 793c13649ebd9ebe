"""Creating and inspecting the pipeline's topics (kafka-python admin client)."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterable, Mapping

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError
from kafka.structs import TopicPartition

from kafkaconf import KafkaLoginError, KafkaSecurity, check_login, resolve
from schemas.topics import (
    DEADLETTER_MAX_MESSAGE_BYTES,
    MAX_MESSAGE_BYTES,
    Topics,
    partitions_for,
)

__all__ = [
    "admin_client",
    "committed_offsets",
    "delete_groups",
    "delete_topics",
    "end_offsets",
    "ensure_topics",
    "partition_counts",
    "plain_consumer",
    "wait_for_broker",
]


def admin_client(
    bootstrap: str, security: KafkaSecurity | None = None, **options: object
) -> KafkaAdminClient:
    """A kafka-python admin client with this process's security settings."""
    return KafkaAdminClient(
        bootstrap_servers=bootstrap, **resolve(security).kafka_python(), **options
    )


def plain_consumer(
    bootstrap: str, security: KafkaSecurity | None = None, **options: object
) -> KafkaConsumer:
    """A kafka-python consumer (no group unless `options` name one) with this process's
    security settings."""
    return KafkaConsumer(bootstrap_servers=bootstrap, **resolve(security).kafka_python(), **options)


def _reachable(bootstrap: str) -> bool:
    """A TCP connection to any bootstrap address succeeds (cheap, no client retries)."""
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), 1.0):
                return True
        except (OSError, ValueError):
            continue
    return False


def wait_for_broker(
    bootstrap: str, timeout_s: float = 10.0, *, security: KafkaSecurity | None = None
) -> None:
    """Return once the broker answers; raise ConnectionError with the address otherwise.

    A broker that refuses this process's login or TLS settings raises
    `kafkaconf.KafkaLoginError` (a ConnectionError) at once, naming the settings to check.
    """
    security = resolve(security)
    deadline = time.monotonic() + timeout_s
    announced = False
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if _reachable(bootstrap):
            if security.protocol != "PLAINTEXT":
                try:
                    check_login(bootstrap, security)
                except KafkaLoginError:
                    raise
                except OSError:
                    pass  # not answering (yet): the wait below decides
            try:
                admin_client(
                    bootstrap, security, request_timeout_ms=5000, bootstrap_timeout_ms=5000
                ).close()
            except Exception as error:  # kafka-python raises several types here
                last_error = error
            else:
                return
        if not announced and timeout_s > 3:
            announced = True
            print(
                f"waiting up to {timeout_s:.0f} s for Kafka at {bootstrap} ...",
                file=sys.stderr,
                flush=True,
            )
        time.sleep(0.5)
    reason = f" ({last_error})" if last_error else " (connection refused)"
    hint = "start one with 'make kafka-up' or set CIVIC_KAFKA_BOOTSTRAP"
    if last_error is not None and not security.tls:
        hint += (
            "; a broker that requires TLS or SASL needs CIVIC_KAFKA_SECURITY_PROTOCOL "
            f"(now {security.protocol})"
        )
    msg = f"no Kafka broker answers at {bootstrap}{reason}; {hint}"
    raise ConnectionError(msg)


def partition_counts(
    bootstrap: str, topics: Iterable[str], *, security: KafkaSecurity | None = None
) -> dict[str, int]:
    """Partitions per existing topic; topics that do not exist are left out."""
    consumer = plain_consumer(bootstrap, security)
    try:
        counts = {}
        for topic in topics:
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                counts[topic] = len(partitions)
        return counts
    finally:
        consumer.close()


def _topic_config(name: str) -> dict[str, str]:
    if name.endswith(Topics().deadletter):
        return {"max.message.bytes": str(DEADLETTER_MAX_MESSAGE_BYTES)}
    return {"max.message.bytes": str(MAX_MESSAGE_BYTES)}


def ensure_topics(
    bootstrap: str,
    topics: Iterable[str],
    partitions: int | Mapping[str, int],
    replication_factor: int = 1,
    *,
    security: KafkaSecurity | None = None,
) -> dict[str, int]:
    """Create the topics that are missing; return the partition count of each.

    Every topic takes messages up to `MAX_MESSAGE_BYTES`, the dead-letter topic up to
    `DEADLETTER_MAX_MESSAGE_BYTES`, so that any message a raw topic took fits, with its
    envelope, into a dead letter.
    New topics get `partitions`, except the contract's single-partition topics
    (`schemas.topics.SINGLE_PARTITION`: the raw incidents), which get one; `partitions`
    may also give the count per topic name (Settings.topic_partitions).
    Existing topics are left as they are, whatever their count.
    """
    wanted = list(topics)
    existing = partition_counts(bootstrap, wanted, security=security)
    missing = [name for name in wanted if name not in existing]
    if missing:
        admin = admin_client(bootstrap, security)
        try:
            admin.create_topics(
                [
                    NewTopic(
                        name,
                        partitions[name]
                        if isinstance(partitions, Mapping)
                        else partitions_for(name, partitions),
                        replication_factor,
                        topic_configs=_topic_config(name),
                    )
                    for name in missing
                ],
                timeout_ms=30_000,
            )
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()
    deadline = time.monotonic() + 30
    while True:
        counts = partition_counts(bootstrap, wanted, security=security)
        if len(counts) == len(wanted) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def delete_topics(
    bootstrap: str,
    topics: Iterable[str],
    timeout_s: float = 60.0,
    *,
    security: KafkaSecurity | None = None,
) -> None:
    """Delete the topics that exist and wait until the broker no longer lists them."""
    names = list(partition_counts(bootstrap, topics, security=security))
    if not names:
        return
    admin = admin_client(bootstrap, security)
    try:
        admin.delete_topics(names, timeout_ms=30_000)
    except UnknownTopicOrPartitionError:
        pass
    finally:
        admin.close()
    deadline = time.monotonic() + timeout_s
    while partition_counts(bootstrap, names, security=security):
        if time.monotonic() > deadline:
            msg = f"topics {names} still exist {timeout_s:.0f} s after deletion"
            raise TimeoutError(msg)
        time.sleep(0.3)


def end_offsets(
    bootstrap: str, topics: Iterable[str], *, security: KafkaSecurity | None = None
) -> dict[str, int]:
    """Total records ever written per topic (sum of partition end offsets)."""
    consumer = plain_consumer(bootstrap, security)
    try:
        totals: dict[str, int] = {}
        for topic in topics:
            partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in partitions]
            offsets = consumer.end_offsets(tps) if tps else {}
            totals[topic] = sum(offsets.values())
        return totals
    finally:
        consumer.close()


def committed_offsets(
    bootstrap: str, group: str, *, security: KafkaSecurity | None = None
) -> dict[str, int]:
    """Records a consumer group has committed, per topic (sum over partitions)."""
    admin = admin_client(bootstrap, security)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    except KafkaError:
        return {}
    finally:
        admin.close()
    totals: dict[str, int] = {}
    for tp, meta in offsets.items():
        if meta.offset >= 0:
            totals[tp.topic] = totals.get(tp.topic, 0) + meta.offset
    return totals


def delete_groups(
    bootstrap: str, groups: Iterable[str], *, security: KafkaSecurity | None = None
) -> None:
    """Delete consumer groups (their committed offsets); groups that do not exist are fine."""
    admin = admin_client(bootstrap, security)
    try:
        # On a new broker there is no group coordinator yet: ask only about known groups.
        existing = {group["group_id"] for group in admin.list_groups()}
        stale = [group for group in groups if group in existing]
        if stale:
            admin.delete_groups(stale)
    finally:
        admin.close()
