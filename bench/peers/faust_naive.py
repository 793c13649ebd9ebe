"""`python -m bench.peers.faust_naive`: the hourly-mean + AQI job, the straightforward Faust way.

A per-event agent (`async for reading in stream`) over a `faust.Record`, and Faust's own
windowed table: tumbling one-hour windows on event time (`relative_to_field`), one
{pollutant: [sum, count]} per station and hour, updated per event (so every reading also
writes a changelog record). When Faust closes a window (`on_window_close`) the hour's
AQI is computed (processors.aqi, via bench.peers.job) and sent to the output topic.

Faust decides that a window is stale by the wall clock (`time.time()` minus `expires`),
not by event time: on replayed or historical readings every window is already stale, so
each table clean-up (every `table_cleanup_interval`, 1 s here) closes the windows seen so
far, part-filled or not; and the clean-up calls `on_window_close` only for windows that
start after the newest window it closed before, so the others vanish without a record.
The benchmark measures throughput; the report gives the records each job published.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import faust

from bench.peers import job
from bench.peers.faust_app import peer_app, run
from schemas.raw import parse_timestamp_ms


class Reading(faust.Record, serializer="json"):
    station_id: str
    pollutant: str
    unit: str
    ts: Any
    value: Any = None
    event_ts: float = 0.0  # seconds: the field the windows follow

    def __post_init__(self) -> None:
        self.event_ts = parse_timestamp_ms(self.ts) / 1000


def main() -> None:
    args = job.parser("python -m bench.peers.faust_naive", __doc__).parse_args()
    progress = job.Progress(args.expect, args.result)
    app = peer_app(args, table_cleanup_interval=1.0)
    raw = app.topic(args.topic, key_type=bytes, key_serializer="raw", value_type=Reading)
    output = app.topic(args.output, key_type=str, value_serializer="json")

    async def publish(key: Any, sums: Any) -> None:
        station_id, (start, _end) = key
        record = job.hourly_record(station_id, round(start * 1000), sums)
        await output.send(key=station_id, value=record)
        progress.outputs += 1

    hourly = (
        app.Table(
            "hourly-means",
            default=dict,
            partitions=args.partitions,
            on_window_close=publish,
        )
        .tumbling(timedelta(hours=1), expires=timedelta(hours=1))
        .relative_to_field(Reading.event_ts)
    )

    @app.agent(raw)
    async def hourly_means(stream: Any) -> None:
        async for reading in stream:
            value = job.epa_value(reading.pollutant, reading.value, reading.unit)
            if value is not None:
                window = hourly[reading.station_id]
                hourly[reading.station_id] = job.add(window.current(), reading.pollutant, value)
            progress.record()

    run(app)


if __name__ == "__main__":
    main()
