"""Fault injection into the real Beijing series, and how many faults the detector flags.

Each of the 72 series (12 stations × 6 pollutants, hourly, 2013–2017) is read in EPA
units, as the stream would hand it to the detector. After a month of learning the series
is cut into slots of :data:`SLOT` readings; each slot receives one fault of a kind drawn
in turn from :data:`KINDS` (seeded RNG), somewhere in its first part, so that the
detector has settled again before the next one:

* ``stuck`` — the sensor freezes: 12–48 readings repeat the last good value;
* ``spike`` — one reading raised by 2–9 times the larger of itself and the series'
  median (its neighbours are real readings): a jump out of the series' normal range,
  where tripling an ozone reading of 2 µg/m³ at night would look like an honest change;
* ``sentinel`` — one reading replaced by -200, -999, -9999 or 9999 as sent (µg/m³);
* ``out_of_range`` — one reading negative, or 1.5–20 times the physical limit;
* ``unit_mixup`` — 1–24 readings sent in mg/m³ where µg/m³ was meant (values / 1000);
* ``dropout`` — 1–48 readings missing.

A fault is *detected* when a reading it touched carries the flag of its kind (for a
spike: the revision of its verdict that the next reading brings; for a unit mix-up: any
flag). Stuck runs are also counted apart by the value they freeze at: at or below the
series' 10th percentile (its floor, where honest data repeats for days) or above.
Dropouts have no flag of their own: what counts is that the readings after one are not
flagged. Untouched readings are all the others: their share with a fault flag is the
false-flag rate (the data's own spikes and caps included).
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from processors.anomaly import FAULT_FLAGS, SeriesDetector
from processors.units import MOLAR_VOLUME, MOLECULAR_WEIGHTS
from processors.validation import PLAUSIBLE_MAX

__all__ = [
    "KINDS",
    "FaultTally",
    "Series",
    "evaluate_series",
    "inject",
    "load_beijing",
]

KINDS = ("stuck", "spike", "sentinel", "out_of_range", "unit_mixup", "dropout")
COLUMNS = {"pm25": "PM2.5", "pm10": "PM10", "so2": "SO2", "no2": "NO2", "co": "CO", "o3": "O3"}
LEARN = 720  # readings (a month) before the first fault
SLOT = 500
AFTER_DROPOUT = 24  # readings after a dropout that must stay unflagged
LOW_PERCENTILE = 10  # a stuck run at or below this percentile of its series is "low"
BEIJING = timedelta(hours=8)  # the files' local time, UTC+8 without daylight saving


def epa_factor(pollutant: str) -> float:
    """µg/m³ → the EPA unit of the pollutant (25 °C, 1 atm)."""
    if pollutant in ("pm25", "pm10"):
        return 1.0
    ppb = float(MOLAR_VOLUME / MOLECULAR_WEIGHTS[pollutant])
    return ppb / 1000.0 if pollutant in ("o3", "co") else ppb


@dataclass
class Series:
    """One station's pollutant: event times (epoch s) and values as sent (µg/m³)."""

    station: str
    pollutant: str
    ts: list[float]
    raw: list[float | None]


def load_beijing(directory: Path) -> list[Series]:
    """The 72 series of the 12 PRSA files, in file and pollutant order."""
    out = []
    for path in sorted(directory.glob("PRSA_Data_*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        station = rows[0]["station"]
        ts = [
            (
                datetime(int(r["year"]), int(r["month"]), int(r["day"]), int(r["hour"]), tzinfo=UTC)
                - BEIJING
            ).timestamp()
            for r in rows
        ]
        for pollutant, column in COLUMNS.items():
            raw = [None if r[column] == "NA" else float(r[column]) for r in rows]
            out.append(Series(station, pollutant, ts, raw))
    return out


@dataclass
class Fault:
    kind: str
    start: int
    length: int
    value: float | None = None  # the value a stuck sensor repeats


def inject(series: Series, seed: int) -> tuple[list[float | None], list[Fault]]:
    """The series' raw values with faults injected, and the faults (seeded)."""
    rng = np.random.default_rng(seed)
    raw = list(series.raw)
    count = len(raw)
    limit_raw = float(PLAUSIBLE_MAX[series.pollutant]) / epa_factor(series.pollutant)
    median = float(np.median([v for v in series.raw if v is not None]))
    faults = []
    kinds = list(KINDS)
    order: list[str] = []
    for slot_start in range(LEARN, count - SLOT, SLOT):
        if not order:
            order = [kinds[i] for i in rng.permutation(len(kinds))]
        kind = order.pop()
        start = slot_start + int(rng.integers(0, SLOT // 2))
        if kind == "stuck":
            length = int(rng.integers(12, 49))
            before = (raw[i] for i in range(start - 1, start - 25, -1) if raw[i] is not None)
            last = next(before, None)
            if last is None:
                continue
            raw[start : start + length] = [last] * length
        elif kind == "spike":
            length = 1
            while start < slot_start + SLOT - 2 and None in raw[start - 1 : start + 2]:
                start += 1
            if None in raw[start - 1 : start + 2]:
                continue
            raw[start] = raw[start] + float(rng.uniform(2.0, 9.0)) * max(raw[start], median)
        elif kind == "sentinel":
            length = 1
            raw[start] = float(rng.choice([-200.0, -999.0, -9999.0, 9999.0]))
        elif kind == "out_of_range":
            length = 1
            if rng.random() < 0.5:
                raw[start] = -float(rng.uniform(1.0, 100.0))
            else:
                raw[start] = limit_raw * float(rng.uniform(1.5, 20.0))
        elif kind == "unit_mixup":
            length = int(rng.integers(1, 25))
            if all(v is None for v in raw[start : start + length]):
                continue  # nothing was sent, so nothing was sent in the wrong unit
            raw[start : start + length] = [
                None if v is None else v / 1000.0 for v in raw[start : start + length]
            ]
        else:  # dropout
            length = int(rng.integers(1, 49))
            raw[start : start + length] = [None] * length
        faults.append(Fault(kind, start, length, raw[start] if kind == "stuck" else None))
    return raw, faults


@dataclass
class FaultTally:
    """Counts for one or more series; add them up with ``+=``."""

    injected: Counter[str] = field(default_factory=Counter)
    detected: Counter[str] = field(default_factory=Counter)
    delays: dict[str, list[int]] = field(default_factory=lambda: {k: [] for k in KINDS})
    untouched: int = 0
    untouched_fault: Counter[str] = field(default_factory=Counter)
    untouched_any_fault: int = 0
    untouched_anomaly: int = 0
    after_dropout: int = 0
    after_dropout_fault: int = 0
    readings: int = 0

    def __iadd__(self, other: FaultTally) -> FaultTally:
        self.injected += other.injected
        self.detected += other.detected
        for kind, delays in other.delays.items():
            self.delays[kind] += delays
        self.untouched += other.untouched
        self.untouched_fault += other.untouched_fault
        self.untouched_any_fault += other.untouched_any_fault
        self.untouched_anomaly += other.untouched_anomaly
        self.after_dropout += other.after_dropout
        self.after_dropout_fault += other.after_dropout_fault
        self.readings += other.readings
        return self


def run_detector(
    series: Series, raw: list[float | None], detector_class: type[SeriesDetector] = SeriesDetector
) -> list[frozenset[str]]:
    """Flags per reading, spike revisions applied to the reading they concern."""
    factor = epa_factor(series.pollutant)
    detector = detector_class(series.pollutant)
    flags: list[frozenset[str]] = []
    for ts, number in zip(series.ts, raw, strict=True):
        value = None if number is None else number * factor
        verdict = detector.update(ts, value, number)
        flags.append(verdict.flags)
        if verdict.revision is not None:
            flags[-2] = verdict.revision.flags
    return flags


def evaluate_series(
    series: Series, seed: int, detector_class: type[SeriesDetector] = SeriesDetector
) -> FaultTally:
    """Inject faults into one series, run the detector, and count."""
    raw, faults = inject(series, seed)
    flags = run_detector(series, raw, detector_class)
    tally = FaultTally(readings=len(raw))
    touched = np.zeros(len(raw), dtype=bool)
    low = float(np.percentile([v for v in series.raw if v is not None], LOW_PERCENTILE))
    for fault in faults:
        span = range(fault.start, min(fault.start + fault.length, len(raw)))
        touched[span.start : span.stop] = True
        tally.injected[fault.kind] += 1
        if fault.kind == "dropout":
            after = range(span.stop, min(span.stop + AFTER_DROPOUT, len(raw)))
            tally.after_dropout += len(after)
            tally.after_dropout_fault += sum(1 for i in after if flags[i] & FAULT_FLAGS)
            continue
        hits = [i for i in span if _caught(fault.kind, flags[i])]
        if hits:
            tally.detected[fault.kind] += 1
            tally.delays[fault.kind].append(hits[0] - fault.start)
        if fault.kind == "stuck" and fault.value is not None:
            where = "stuck_low" if fault.value <= low else "stuck_high"
            tally.injected[where] += 1
            tally.detected[where] += bool(hits)
    for i in np.flatnonzero(~touched):
        if series.raw[i] is None:
            continue
        tally.untouched += 1
        faulty = flags[i] & FAULT_FLAGS
        if faulty:
            tally.untouched_any_fault += 1
            tally.untouched_fault.update(faulty)
        if "anomaly" in flags[i]:
            tally.untouched_anomaly += 1
    return tally


def _caught(kind: str, flags: frozenset[str]) -> bool:
    """Does a reading's verdict catch a fault of this kind? A unit mix-up has no flag of
    its own: any flag (in practice ``anomaly``) catches it."""
    return bool(flags) if kind == "unit_mixup" else kind in flags


def series_seed(seed: int, index: int) -> int:
    """The RNG seed of the index-th series: runs with the same seed inject the same faults."""
    return seed * 1000 + index
