"""Hostile input through the real worker: the fuzz is dead-lettered, the real results stand.

A seeded mix of garbage (random bytes, truncated and oversized messages, deeply nested
JSON, wrong types, NaN, unicode tricks, timestamps from year 1 and 9999) is sent between
real readings. The worker keeps running, every hostile message reaches the dead-letter
topic once with its original bytes, and the datasets equal a clean run's.
"""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from schemas.raw import MAX_RAW_BYTES
from tests.integration.test_pipeline import beijing_days

pytestmark = pytest.mark.integration


def hostile_messages(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    good = json.dumps(
        {
            "station_id": "dongsi",
            "pollutant": "pm25",
            "value": 12.5,
            "unit": "ug/m3",
            "ts": "2013-03-01T00:30:00+08:00",
        }
    ).encode()
    makers = [
        lambda: rng.randbytes(rng.randrange(1, 200)),
        lambda: good[: rng.randrange(1, len(good))],
        lambda: b"[" * rng.randrange(1_000, 60_000),
        lambda: json.dumps(
            {"station_id": "dongsi", "pollutant": "pm25", "value": "NaN", "unit": "ug/m3", "ts": 0}
        ).encode(),
        lambda: json.dumps(
            {
                "station_id": "d\u202eongsi",
                "pollutant": "pm25",
                "value": 1,
                "unit": "ug/m3",
                "ts": "0001-01-01T00:00:00+00:00",
            }
        ).encode(),
        lambda: json.dumps(
            {
                "station_id": ["dongsi"],
                "pollutant": 25,
                "value": {},
                "unit": None,
                "ts": "9999-12-31T23:59:59+00:00",
            }
        ).encode(),
        lambda: json.dumps(
            {
                "station_id": "dongsi",
                "pollutant": "pm25",
                "value": 1e308,
                "unit": "ug/m3",
                "ts": "2013-03-01T00:30:00+08:00",
            }
        ).encode(),
        lambda: b"\xc3\x01" + rng.randbytes(rng.randrange(0, 64)),
        lambda: "ｄｏｎｇｓｉ".encode() + rng.randbytes(5),
    ]
    messages = [rng.choice(makers)() for _ in range(count)]
    messages.append(good[:-1] + b" " * (MAX_RAW_BYTES + 1) + b"}")  # oversized, else valid
    messages.append(b"x" * 1_000_000)  # near the topic's limit
    return messages


def test_fuzz_between_real_readings_is_dead_lettered_and_changes_no_result(pipeline_factory):
    real = beijing_days(2)
    hostile = hostile_messages(1500, seed=20261127)
    rng = random.Random(1)
    mixed: list[tuple[bytes | None, bytes]] = list(real)
    for data in hostile:
        mixed.insert(
            rng.randrange(len(mixed) + 1), (rng.choice([b"dongsi", b"tiantan", None]), data)
        )

    clean = pipeline_factory("clean", partitions=2).start_all()
    fuzzed = pipeline_factory("fuzzed", partitions=2).start_all()
    clean.send(real)
    fuzzed.send(mixed)
    clean.wait_until_caught_up(len(real), timeout_s=180)
    fuzzed.wait_until_caught_up(len(mixed), timeout_s=180)

    letters = fuzzed.read_topic(fuzzed.topics.deadletter)
    assert Counter(letter["value"] for _, letter, *_ in letters) == Counter(hostile)
    reasons = Counter(letter["reason"] for _, letter, *_ in letters)
    assert reasons["too_large"] == 2
    assert clean.read_topic(clean.topics.deadletter) == []
    assert fuzzed.rows("aqi_hourly") == clean.rows("aqi_hourly")
    assert fuzzed.rows("readings") == clean.rows("readings")
