"""`python -m bench.peers.quix`: the hourly-mean + AQI job with Quix Streams.

A StreamingDataFrame over the raw topic (JSON), event time from the reading's `ts`
(`timestamp_extractor`), the reading in EPA units, then Quix's own tumbling one-hour
window per message key (the station) with `reduce` into {pollutant: [sum, count]} and a
10-minute grace (civicstream's allowed lateness), emitted with `.final()` when event
time passes the window (closing strategy "key": per station, as civicstream does); the
hour's AQI (processors.aqi, via bench.peers.job) goes to the output topic. State lives in
Quix's RocksDB stores with changelog topics, its defaults.

Needs the `bench` extra (`pip install -e '.[bench]'`: quixstreams).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from quixstreams import Application
from quixstreams.kafka.configuration import ConnectionConfig

from bench.harness import SECURITY
from bench.peers import job
from schemas.raw import parse_timestamp_ms


def connection(bootstrap: str) -> str | ConnectionConfig:
    """The broker, with the CIVIC_KAFKA_* security settings the other clients get."""
    if SECURITY.protocol == "PLAINTEXT":
        return bootstrap
    return ConnectionConfig(
        bootstrap_servers=bootstrap,
        security_protocol=SECURITY.protocol.lower(),
        sasl_mechanism=SECURITY.mechanism if SECURITY.sasl else None,
        sasl_username=SECURITY.username,
        sasl_password=SECURITY.password.reveal() if SECURITY.password else None,
        ssl_ca_location=SECURITY.cafile,
        ssl_certificate_location=SECURITY.certfile,
        ssl_key_location=SECURITY.keyfile,
    )


def event_time(value: Any, _headers: Any, timestamp: int, _kind: Any) -> int:
    try:
        return parse_timestamp_ms(value["ts"])
    except Exception:  # unusable readings are dropped later; keep the broker's time
        return timestamp


def main() -> None:
    args = job.parser("python -m bench.peers.quix", __doc__).parse_args()
    progress = job.Progress(args.expect, args.result)
    app = Application(
        broker_address=connection(args.bootstrap),
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=str(args.state_dir),
        loglevel="WARNING",
    )
    raw = app.topic(args.topic, value_deserializer="json", timestamp_extractor=event_time)
    output = app.topic(args.output, value_serializer="json")

    def count(_value: Any) -> None:
        progress.record()

    def opened(reading: job.Reading) -> dict[str, Any]:
        return job.add({"station": reading.station_id}, reading.pollutant, reading.value_epa)

    def added(sums: dict[str, Any], reading: job.Reading) -> dict[str, Any]:
        return job.add(sums, reading.pollutant, reading.value_epa)

    def publish(window: dict[str, Any]) -> dict[str, Any]:
        sums = dict(window["value"])
        station_id = sums.pop("station")
        progress.outputs += 1
        return job.hourly_record(station_id, window["start"], sums)

    sdf = app.dataframe(raw)
    sdf = sdf.update(count)
    sdf = sdf.apply(job.parse).filter(lambda reading: reading is not None)
    sdf = (
        sdf.tumbling_window(timedelta(hours=1), grace_ms=timedelta(minutes=10))
        .reduce(added, opened)
        .final()
    )
    sdf = sdf.apply(publish)
    sdf.to_topic(output)
    logging.getLogger("quixstreams").setLevel(logging.WARNING)
    app.run()


if __name__ == "__main__":
    main()
