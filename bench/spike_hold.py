"""`python -m bench.spike_hold`: what holding hours back for spike checks costs and buys.

Runs the Beijing readings (12 stations, hourly) through the pure air-quality step twice:
with CIVIC_SPIKE_WAIT=0 (an hour is published as soon as it is final, as before the hold)
and with the default wait. For every hourly record it notes the station's stream time
when the record was published, and reports the share of hours held, the extra latency
in stream time (mean over all hours, and over the held ones), and how many spikes the
hold kept out of published means (hours whose `excluded_count` grew).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from typing import Any

from bench.__main__ import workload
from schemas import Topics
from streams.air_quality import AirQualityPipeline, SourceRecord
from streams.station import Closed, StationState
from streams.time import HOUR_MS, HourlyWindows

LATENESS_MS = 600_000


class _States(dict[str, bytes]):
    def load(self, key: str) -> bytes | None:
        return self.get(key)


def _published(records: list[Any], wait_ms: int, batch: int) -> dict[tuple[str, int], Any]:
    """(station, hour) → (stream time at publication, excluded_count) for one wait."""
    seen: dict[tuple[str, int], Any] = {}
    close = StationState.close

    def noting(state: StationState, *args: Any, **kwargs: Any) -> Closed:
        closed = close(state, *args, **kwargs)
        for hour in closed.hours:
            record = hour.aqi_record
            when = (state.stream_time_ms, record["excluded_count"])
            seen[(state.station_id, record["hour_start"])] = when
        return closed

    pipeline = AirQualityPipeline(Topics(), HourlyWindows(LATENESS_MS, wait_ms))
    states = _States()
    source = [SourceRecord("raw", 0, i, r.key, r.value) for i, r in enumerate(records)]
    StationState.close = noting  # type: ignore[method-assign]
    try:
        for start in range(0, len(source), batch):
            result = pipeline.process(source[start : start + batch], states)
            states.update((u.station_id, u.data) for u in result.state_updates)
    finally:
        StationState.close = close  # type: ignore[method-assign]
    return seen


def _rows(args: argparse.Namespace) -> Iterator[str]:
    records = workload("beijing", args.days, 0)
    yield f"{len(records):,} Beijing readings, {args.days} days, 12 stations"
    started = time.perf_counter()
    before = _published(records, 0, args.batch)
    after = _published(records, args.wait_h * HOUR_MS, args.batch)
    hours = sorted(before.keys() & after.keys())
    extra = [after[k][0] - before[k][0] for k in hours]
    held = [e for e in extra if e > 0]
    kept_out = sum(after[k][1] - before[k][1] for k in hours if after[k][1] > before[k][1])
    mean_all = sum(extra) / len(extra) / 60_000
    mean_held = sum(held) / len(held) / 60_000 if held else 0.0
    yield f"hourly records: {len(hours):,} (only without the wait: {len(before) - len(hours)})"
    yield f"held for a spike check: {len(held):,} ({len(held) / len(hours):.2%})"
    longer = [e for e in held if e > args.wait_h * HOUR_MS]
    yield (
        f"extra latency (stream time): mean {mean_all:.1f} min over all hours, "
        f"{mean_held:.0f} min over the held ones, max {max(extra, default=0) / 60_000:.0f} min"
    )
    yield (
        f"held longer than the wait (the station sent nothing meanwhile, so its stream time "
        f"stood still): {len(longer)}"
    )
    yield f"spiking readings kept out of published means: {kept_out}"
    yield f"({time.perf_counter() - started:.0f} s)"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spike_hold", description=__doc__)
    parser.add_argument("--days", type=int, default=365, help="Beijing days [365]")
    parser.add_argument("--wait-h", type=int, default=1, help="CIVIC_SPIKE_WAIT in hours [1]")
    parser.add_argument("--batch", type=int, default=2000, help="records per step [2000]")
    for row in _rows(parser.parse_args()):
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
