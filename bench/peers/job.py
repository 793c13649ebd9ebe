"""The peers' job and their common command line: hourly means per station and pollutant
(EPA units), and the AQI of each station-hour from those means (processors.aqi).

This is less than civicstream's worker does per reading: no validation beyond the units,
no dead letters, no duplicate or late handling, no NowCast or 8-hour history across
hours (the AQI sees the hour's own means), no enriched readings, daily AQI or store —
so a peer's figure is an upper bound for that framework doing civicstream's work.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from processors import aqi, units
from processors.exceptions import ProcessorError
from schemas.exceptions import InvalidInput
from schemas.raw import parse_timestamp_ms

__all__ = ["Progress", "Reading", "add", "epa_value", "hourly_record", "parse", "parser"]


@dataclass(frozen=True, slots=True)
class Reading:
    station_id: str
    pollutant: str
    value_epa: float
    ts_ms: int


def epa_value(pollutant: str, value: Any, unit: str) -> float | None:
    """The concentration in the EPA unit of its pollutant, or None when unusable."""
    if value is None:
        return None
    try:
        return float(units.to_epa_units(pollutant, value, unit))
    except (TypeError, ValueError, ProcessorError):
        return None


def parse(data: bytes | dict[str, Any]) -> Reading | None:
    """A raw reading (JSON) in EPA units, or None when it cannot be used."""
    try:
        fields = json.loads(data) if isinstance(data, bytes) else data
        value = epa_value(fields["pollutant"], fields.get("value"), fields["unit"])
        if value is None:
            return None
        return Reading(
            str(fields["station_id"]), fields["pollutant"], value, parse_timestamp_ms(fields["ts"])
        )
    except (KeyError, TypeError, ValueError, InvalidInput):
        return None


def add(sums: dict[str, list[float]], pollutant: str, value: float) -> dict[str, list[float]]:
    """A new {pollutant: [sum, count]} with `value` added (the input is not changed)."""
    total, count = sums.get(pollutant, (0.0, 0))
    return {**sums, pollutant: [total + value, count + 1]}


def hourly_record(station_id: str, hour_start_ms: int, sums: dict[str, Any]) -> dict[str, Any]:
    """The station-hour's means and its AQI (the hour alone: no history)."""
    means = {p: total / count for p, (total, count) in sums.items() if count}
    result = aqi.hourly_aqi({p: [Decimal(repr(mean))] for p, mean in means.items()})
    return {
        "station_id": station_id,
        "hour_start": hour_start_ms,
        "aqi": result.aqi,
        "category": result.category,
        "main_pollutant": result.main_pollutant,
        "hourly_means": means,
        "reading_count": sum(int(count) for _, count in sums.values()),
    }


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=doc)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True, help="the raw topic")
    parser.add_argument("--output", required=True, help="the topic for hourly AQI records")
    parser.add_argument("--group", required=True, help="consumer group / application id")
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--expect", type=int, required=True, help="raw records to process")
    parser.add_argument("--result", type=Path, required=True, help="JSON written when done")
    parser.add_argument("--state-dir", type=Path, required=True)
    return parser


class Progress:
    """Counts processed records; writes the result file once `expect` are done (wall
    times of the first and the last, and the process's CPU time in between)."""

    def __init__(self, expect: int, result: Path) -> None:
        self.expect = expect
        self.result = result
        self.count = 0
        self.first: float | None = None
        self.cpu_first = 0.0
        self.outputs = 0

    def record(self) -> None:
        if self.first is None:
            self.first = time.time()
            self.cpu_first = time.process_time()
        self.count += 1
        if self.count == self.expect:
            done = time.time()
            cpu_s = time.process_time() - self.cpu_first
            temporary = self.result.with_suffix(".tmp")
            temporary.write_text(
                json.dumps(
                    {
                        "first": self.first,
                        "done": done,
                        "records": self.count,
                        "outputs_so_far": self.outputs,
                        "cpu_s": cpu_s,
                        "pid": os.getpid(),
                    }
                )
            )
            temporary.replace(self.result)
